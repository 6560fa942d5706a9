"""Where request code runs: on the event loop for SQLite, in worker threads otherwise; and
background work a request starts begins only after the request's transaction committed."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from repository_testkit import Env

from certdepot.repository.store import Store


def test_only_sqlite_runs_requests_inline() -> None:
    assert Store("sqlite://").runs_inline
    # Never connected here: the engine is lazy.
    assert not Store("postgresql+psycopg://certdepot@127.0.0.1:1/certdepot").runs_inline


async def _new_order_threads(env: Env) -> list[int]:
    """The threads a newOrder's store work (its nonce check) ran on."""
    c = await env.tenant_client("team-a")
    threads: list[int] = []
    original = env.repo.store.use_nonce

    def recording(value: str) -> bool:
        threads.append(threading.get_ident())
        return original(value)

    env.repo.store.use_nonce = recording  # type: ignore[method-assign]
    try:
        r = await c.new_order(["x.a.example.test"])
    finally:
        env.repo.store.use_nonce = original  # type: ignore[method-assign]
    assert r.status_code == 201, r.text
    return threads


async def test_sqlite_requests_run_on_the_event_loop(env: Env) -> None:
    assert await _new_order_threads(env) == [threading.get_ident()]  # this test's loop thread


async def test_threaded_requests_when_not_inline(env: Env) -> None:
    env.repo.store.runs_inline = False
    threads = await _new_order_threads(env)
    assert threads and threads[0] != threading.get_ident()


async def test_background_work_starts_after_the_request_committed(env: Env) -> None:
    repo = env.repo
    repo.loop = asyncio.get_running_loop()
    committed = threading.Event()
    seen: list[bool] = []

    async def job() -> None:
        seen.append(committed.is_set())

    def request() -> None:
        with repo.store.unit():
            repo.store.after_commit(committed.set)  # runs before the spawn's start
            repo.spawn_from_thread(job(), "job")
            time.sleep(0.2)  # the loop is idle: an immediate start would run now

    await asyncio.to_thread(request)
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen == [True]


async def test_start_and_wait_refuses_the_loop_thread(env: Env) -> None:
    repo = env.repo
    repo.loop = asyncio.get_running_loop()

    async def job() -> None:
        return None

    coro = job()
    with pytest.raises(RuntimeError, match="event loop"):
        repo.start_and_wait(coro, "job", 1.0)
    coro.close()


async def _finalize_threads(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads a plain finalize ran on; the finalize answer is a valid order."""
    from certdepot.acme import crypto, jws
    from certdepot.repository import orders as order_logic

    c = await env.tenant_client("team-a")
    order = (await c.new_order(["x.a.example.test"])).json()
    threads: list[int] = []
    original = order_logic.finalize

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(order_logic, "finalize", recording)
    csr = crypto.build_csr(crypto.generate_private_key(), ["x.a.example.test"])
    r = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "valid"
    cert = await c.post(r.json()["certificate"], None)
    assert cert.status_code == 200 and "BEGIN CERTIFICATE" in cert.text
    return threads


class Upstreamish:
    """The local CA seen through ``issue`` only, as an upstream ACME CA is (no
    ``sign_now``): issuance runs on the event loop and the request waits for it."""

    can_issue = True

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name

    async def issue(self, request: Any) -> str:
        chain: str = await self.inner.issue(request)
        return chain

    async def suggested_renewal(self, cert: Any) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_local_ca_finalize_signs_on_the_event_loop(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local CA signs in place (SignsNow): no hop to a thread and back, and the
    certificate is in the finalize answer."""
    from certdepot.repository.issuers import SignsNow

    assert isinstance(env.repo.issuers["local"], SignsNow)
    assert await _finalize_threads(env, monkeypatch) == [threading.get_ident()]


async def test_a_finalize_for_an_upstream_issuer_is_handled_in_a_thread(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuer that waits on a network runs on the loop while the request waits for it,
    so the request cannot run on the loop; the order is still valid in the answer."""
    env.repo.issuers["local"] = Upstreamish(env.repo.issuers["local"])
    threads = await _finalize_threads(env, monkeypatch)
    assert threads and threads[0] != threading.get_ident()


async def test_only_a_csr_finalize_for_an_upstream_issuer_waits(env: Env) -> None:
    from certdepot.repository.http import Signed
    from certdepot.repository.routes.orders import _issues

    def signed(payload: dict[str, Any] | None) -> Signed:
        return Signed({}, payload, b"", {}, None)

    repo = env.repo
    assert not _issues(repo, signed({"csr": "x"}))  # the local CA only: signs in place
    repo.issuers["local"] = Upstreamish(repo.issuers["local"])
    assert _issues(repo, signed({"csr": "x"}))
    assert _issues(repo, signed({"csr": "x", "ephemeral-jwk": {}}))
    assert not _issues(repo, signed({"ephemeral-jwk": {}}))
    assert not _issues(repo, signed(None))
