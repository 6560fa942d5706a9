"""Renewal decisions: obtain at start, renew when due, back off on failure while the
current certificate keeps being served, and one replica per lease."""

from __future__ import annotations

import asyncio
from typing import Any

from cryptography import x509
from repository_testkit import Env

from certdepot.repository import certstore, renewal
from certdepot.repository import store as tables
from certdepot.repository.issuers import IssueRequest, IssuerError


class Failing:
    name = "local"
    can_issue = True

    def __init__(self) -> None:
        self.calls = 0

    async def issue(self, request: IssueRequest) -> str:
        self.calls += 1
        raise IssuerError("upstream down")

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        return None

    async def close(self) -> None:
        return None


async def test_obtain_then_not_due(env: Env) -> None:
    await renewal.run_once(env.repo)
    first = certstore.current_managed(env.repo.store, "web")
    assert first is not None and first["key"] is not None
    await renewal.run_once(env.repo)
    assert certstore.current_managed(env.repo.store, "web")["id"] == first["id"]  # type: ignore[index]


async def test_due_by_renew_before(env_factory: Any) -> None:
    env: Env = await env_factory(certificates=[
        {"name": "web", "dnsNames": ["www.example.test"], "issuer": "local",
         "lifetime": "3d", "renewBefore": "2d"}], tenants=[])
    await renewal.run_once(env.repo)
    a = certstore.current_managed(env.repo.store, "web")
    assert a is not None
    await renewal.run_once(env.repo)
    assert certstore.current_managed(env.repo.store, "web")["id"] == a["id"]  # type: ignore[index]
    start = env.repo.clock()
    env.repo.clock = lambda: start + 86400 + 60  # one day on: inside the last two days
    await renewal.run_once(env.repo)
    b = certstore.current_managed(env.repo.store, "web")
    assert b and a["id"] != b["id"]


async def test_renew_before_longer_than_the_lifetime_does_not_renew_every_pass(
        env_factory: Any) -> None:
    # renewBefore 2d on a 1d certificate would be "due" on every pass; the two-thirds rule
    # applies to such a certificate instead.
    env: Env = await env_factory(certificates=[
        {"name": "web", "dnsNames": ["www.example.test"], "issuer": "local",
         "lifetime": "1d", "renewBefore": "2d"}], tenants=[])
    await renewal.run_once(env.repo)
    a = certstore.current_managed(env.repo.store, "web")
    await renewal.run_once(env.repo)
    b = certstore.current_managed(env.repo.store, "web")
    assert a and b and a["id"] == b["id"]
    start = env.repo.clock()
    env.repo.clock = lambda: start + 86400 * 2 / 3 + 60
    await renewal.run_once(env.repo)
    c = certstore.current_managed(env.repo.store, "web")
    assert c and c["id"] != a["id"]


async def test_failure_backs_off_and_keeps_serving(env: Env) -> None:
    await renewal.run_once(env.repo)
    current = certstore.current_managed(env.repo.store, "web")
    assert current is not None
    failing = Failing()
    env.repo.issuers["local"] = failing
    renewal.request_renewal(env.repo.store, "web")
    await renewal.run_once(env.repo)
    state = env.repo.store.get(tables.managed, "web")
    assert state is not None
    assert state["failures"] == 1 and "upstream down" in state["last_error"]
    assert state["next_attempt"] > env.repo.clock()
    calls = failing.calls
    await renewal.run_once(env.repo)  # inside the backoff: no new attempt
    assert failing.calls == calls
    assert certstore.current_managed(env.repo.store, "web")["id"] == current["id"]  # type: ignore[index]
    assert renewal.backoff(1) < renewal.backoff(3) <= renewal.MAX_BACKOFF


async def test_lease_lets_one_replica_renew(env: Env) -> None:
    from certdepot.repository.state import Repo

    other = Repo(config=env.repo.config, store=env.repo.store, vault=env.repo.vault,
                 issuers=env.repo.issuers, urls=env.repo.urls)
    assert env.repo.store.acquire_lease("renew:web", other.replica_id, 60)
    await renewal.run_once(env.repo)  # web is leased by the other replica
    assert certstore.current_managed(env.repo.store, "web") is None
    env.repo.store.release_lease("renew:web", other.replica_id)
    await asyncio.gather(renewal.run_once(env.repo), renewal.run_once(other))
    rows = env.repo.store.select(tables.certificates,
                                 tables.certificates.c.managed_name == "web")
    assert len(rows) == 1


class AriSaysNow(Failing):
    """A CA whose renewal information says: renew now."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.replaces: list[str | None] = []

    async def issue(self, request: IssueRequest) -> str:
        self.calls += 1
        self.replaces.append(request.replaces)
        chain: str = await self.inner.issue(request)
        return chain

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        import time

        return time.time() - 20, time.time() - 1  # the whole window has passed


async def test_ari_window_triggers_renewal_with_replaces(env: Env) -> None:
    await renewal.run_once(env.repo)
    first = certstore.current_managed(env.repo.store, "web")
    assert first is not None
    ari_issuer = AriSaysNow(env.repo.issuers["local"])
    env.repo.issuers["local"] = ari_issuer
    await renewal.run_once(env.repo)
    second = certstore.current_managed(env.repo.store, "web")
    assert second is not None and second["id"] != first["id"]
    assert first["ari_id"] in ari_issuer.replaces  # RFC 9773 replaces the old certificate


class AriWindowFromIssuance(Failing):
    """Like Pebble's ten-minute profile: the window opens at issuance."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    async def issue(self, request: IssueRequest) -> str:
        self.calls += 1
        chain: str = await self.inner.issue(request)
        return chain

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        start = cert.not_valid_before_utc.timestamp()
        return start, start + 600


async def test_window_open_at_issuance_does_not_renew_every_pass(env_factory: Any) -> None:
    env: Env = await env_factory(certificates=[
        {"name": "web", "dnsNames": ["www.example.test"], "issuer": "local"}], tenants=[])
    issuer = AriWindowFromIssuance(env.repo.issuers["local"])
    env.repo.issuers["local"] = issuer
    for _ in range(10):
        await renewal.run_once(env.repo)
    # one initial issuance; a renewal only if this serial's random moment (within 10 min)
    # already passed, which for ten quick passes is a small chance, never ten renewals
    assert issuer.calls <= 2


async def test_lease_heartbeat_keeps_a_short_lease(env: Env) -> None:
    from certdepot.repository import leases

    async with leases.held(env.repo, "renew:x", ttl=0.3) as mine:
        assert mine
        await asyncio.sleep(0.8)  # beyond the TTL: the heartbeat must have extended it
        assert not env.repo.store.acquire_lease("renew:x", "other", 10)
    assert env.repo.store.acquire_lease("renew:x", "other", 10)  # released at the end
    async with leases.held(env.repo, "renew:x") as mine:
        assert not mine  # held by "other"
