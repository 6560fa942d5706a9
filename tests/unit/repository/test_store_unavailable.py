"""A store that is unreachable or restarting answers 503 + Retry-After, not 500."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from repository_testkit import BASE, Env


def _pg_down() -> sa.exc.OperationalError:
    # What psycopg + SQLAlchemy raise while PostgreSQL restarts (details must not leak).
    orig = psycopg.OperationalError(
        "connection to server at \"10.9.8.7\", port 5432 failed: secret-user@db")
    return sa.exc.OperationalError("SELECT nonces.value FROM nonces", {}, orig)


def _break_store(env: Env, exc: Exception) -> None:
    def fail() -> None:
        raise exc

    @contextlib.contextmanager
    def tx() -> Iterator[Any]:
        fail()
        yield  # never reached: the outage raises on entering the transaction

    env.repo.store.tx = tx  # type: ignore[method-assign]
    env.repo.store._nonce_pool = (0.0, 0.0, [])  # no pre-minted nonce to hide the outage


def _assert_unavailable(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(r.headers["Retry-After"]) <= 10
    doc = r.json()
    assert doc["type"] == "urn:ietf:params:acme:error:serverInternal"
    assert "unavailable" in doc["detail"]
    for leaked in ("10.9.8.7", "5432", "secret-user", "SELECT", "nonces"):
        assert leaked not in r.text


async def test_store_down_is_503_with_retry_after(env: Env) -> None:
    c = await env.tenant_client("team-a")
    d = await c.dir()
    nonce = await c.nonce()
    _break_store(env, _pg_down())
    _assert_unavailable(await c.post(d["newOrder"], {
        "identifiers": [{"type": "dns", "value": "a.example.test"}]}, nonce=nonce))
    _assert_unavailable(await env.http.get(d["newNonce"]))
    metrics = (await env.http.get(f"{BASE}/metrics")).text
    assert 'status="503"' in metrics and 'status="500"' not in metrics


@pytest.mark.parametrize("exc", [
    sa.exc.InterfaceError("SELECT 1", {}, psycopg.InterfaceError("connection closed")),
    sa.exc.TimeoutError("QueuePool limit reached"),
    sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
])
async def test_other_unavailable_errors(env: Env, exc: Exception) -> None:
    d = await env.client().dir()
    _break_store(env, exc)
    r = await env.http.get(d["newNonce"])
    if isinstance(exc, sa.exc.OperationalError):
        # sqlite3 errors built by hand carry no result code: treated as transient.
        assert r.status_code == 503
    else:
        _assert_unavailable(r)


async def test_store_bug_stays_500(env: Env) -> None:
    d = await env.client().dir()
    bug = sqlite3.OperationalError("no such table: nonces")
    bug.sqlite_errorname = "SQLITE_ERROR"
    _break_store(env, sa.exc.OperationalError("SELECT 1", {}, bug))
    r = await env.http.get(d["newNonce"])
    assert r.status_code == 500
    assert "Retry-After" not in r.headers
    assert "nonces" not in r.text


async def test_store_error_in_a_handler_keeps_the_nonce(env: Env) -> None:
    # Nonces still come (pooled), but the handler's read fails mid-request.
    c = await env.tenant_client("team-a")
    d = await c.dir()

    def get(*args: Any, **kwargs: Any) -> Any:
        raise _pg_down()

    env.repo.store.get = get  # type: ignore[method-assign]
    env.repo.store.scalar = get  # type: ignore[method-assign]  # newOrder's first read
    r = await c.post(d["newOrder"], {
        "identifiers": [{"type": "dns", "value": "a.example.test"}]})
    _assert_unavailable(r)
    assert r.headers["Replay-Nonce"]
