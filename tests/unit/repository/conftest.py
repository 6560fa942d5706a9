"""Fixtures for the in-process repository tests (helpers in repository_testkit)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from repository_testkit import BASE, Env, make_config

from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.state import Repo
from certdepot.repository.tenants import create_tenant


@pytest.fixture
async def env_factory() -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Repo, httpx.AsyncClient]] = []

    async def make(**overrides: Any) -> Env:
        repo = build_repo(make_config(**overrides))
        app = create_app(repo)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        creds = {t.name: create_tenant(repo.store, repo.vault, t.name)
                 for t in repo.config.tenants}
        made.append((repo, http))
        return Env(repo, http, creds)

    yield make
    for repo, http in made:
        await http.aclose()
        for t in list(repo.tasks):
            t.cancel()
        repo.store.close()


@pytest.fixture
async def env(env_factory: Callable[..., Any]) -> Env:
    e: Env = await env_factory()
    return e
