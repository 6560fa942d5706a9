"""The operator's AcmeClient pool: one client per (endpoint, account), reused across calls,
replaced when the repository resource changes, closed when idle or old."""

from __future__ import annotations

import asyncio
from typing import cast

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.controller.gateway.acme_gateway import ClientPool, endpoint_key
from certdepot.controller.gateway.model import Endpoint


class _Client:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True


class _Factory:
    def __init__(self) -> None:
        self.made: list[_Client] = []

    def __call__(self) -> AcmeClient:
        self.made.append(_Client())
        return cast(AcmeClient, self.made[-1])

    def closed(self, i: int) -> bool:
        return self.made[i].closed

    def client(self, i: int) -> AcmeClient:
        return cast(AcmeClient, self.made[i])


def test_endpoint_key_changes_with_everything_the_resource_contributes() -> None:
    key = crypto.generate_private_key("ec-p256")
    base = Endpoint("https://r.test/directory", key, b"CA", "https://r.test/acct/1")
    same_key_reparsed = crypto.load_private_key(crypto.private_key_to_pem(key))
    assert endpoint_key(base) == endpoint_key(
        Endpoint(base.directory_url, same_key_reparsed, b"CA", base.account_url))
    others = [
        Endpoint("https://other.test/directory", key, b"CA", base.account_url),
        Endpoint(base.directory_url, crypto.generate_private_key("ec-p256"), b"CA",
                 base.account_url),
        Endpoint(base.directory_url, key, b"CA2", base.account_url),
        Endpoint(base.directory_url, key, None, base.account_url),
        Endpoint(base.directory_url, key, b"CA", "https://r.test/acct/2"),
    ]
    assert len({endpoint_key(e) for e in [base, *others]}) == 1 + len(others)
    assert "PRIVATE" not in repr(endpoint_key(base))


async def test_reused_then_replaced_when_idle_or_old() -> None:
    now = [0.0]
    pool = ClientPool(max_age=100, max_idle=10, clock=lambda: now[0])
    make = _Factory()
    async with pool.lease("a", make) as c1:
        pass
    now[0] = 5
    async with pool.lease("a", make) as c2:
        assert c2 is c1
    assert len(make.made) == 1 and not make.closed(0)
    now[0] = 16  # idle longer than max_idle
    async with pool.lease("a", make) as c3:
        assert c3 is not c1 and make.closed(0)
    for t in (25, 35, 45, 55, 65, 75, 85, 95, 105, 117):  # kept in use; 117: past max_age
        now[0] = t
        async with pool.lease("a", make):
            pass
    assert len(make.made) == 3 and make.closed(1) and not make.closed(2)
    await pool.aclose()
    assert all(c.closed for c in make.made) and len(pool) == 0


async def test_a_changed_resource_gets_a_new_client_and_the_old_one_is_closed() -> None:
    now = [0.0]
    pool = ClientPool(max_idle=10, clock=lambda: now[0])
    make = _Factory()
    async with pool.lease("old-url", make):
        pass
    now[0] = 11
    async with pool.lease("new-url", make) as c:
        assert c is make.client(1)
    assert make.closed(0) and len(pool) == 1
    await pool.aclose()


async def test_concurrent_callers_get_their_own_clients_then_reuse_them() -> None:
    pool = ClientPool(max_idle_clients=3)
    make = _Factory()

    async def use() -> AcmeClient:
        async with pool.lease("a", make) as c:
            await asyncio.sleep(0.01)
            return c

    got = await asyncio.gather(*(use() for _ in range(5)))
    assert len(make.made) == 5 and len({id(c) for c in got}) == 5
    # Three kept idle, the other two closed; the next callers reuse the kept ones.
    assert len(pool) == 3 and sum(c.closed for c in make.made) == 2
    again = await asyncio.gather(*(use() for _ in range(3)))
    assert len(make.made) == 5 and all(not make.made[got.index(c)].closed for c in again)
    await pool.aclose()
    assert all(c.closed for c in make.made)


async def test_a_client_that_failed_is_not_reused() -> None:
    pool = ClientPool()
    make = _Factory()
    try:
        async with pool.lease("a", make):
            raise ConnectionError("dropped")
    except ConnectionError:
        pass
    assert make.closed(0) and len(pool) == 0
    async with pool.lease("a", make) as c:
        assert c is make.client(1)
    await pool.aclose()


async def test_at_most_max_active_clients_per_key_at_once() -> None:
    pool = ClientPool(max_active=2)
    make = _Factory()
    active, peak = 0, 0

    async def use(key: str) -> None:
        nonlocal active, peak
        async with pool.lease(key, make):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(use("a") for _ in range(10)))
    assert peak == 2 and len(make.made) == 2  # the waiters reused the two clients
    # The bound is per key: another repository is not held up by this one.
    peak = 0
    await asyncio.gather(*(use(k) for k in ("a", "a", "b", "b")))
    assert peak == 4
    await pool.aclose()


async def test_concurrent_sweeps_of_slow_closing_clients() -> None:
    class _SlowClient(_Client):
        async def aclose(self) -> None:
            await asyncio.sleep(0.01)  # a TLS close takes a moment
            await super().aclose()

    now = [0.0]
    pool = ClientPool(max_idle=10, clock=lambda: now[0])
    made: list[_SlowClient] = []

    def make() -> AcmeClient:
        made.append(_SlowClient())
        return cast(AcmeClient, made[-1])

    for key in ("a", "b", "c"):
        async with pool.lease(key, make):
            pass
    now[0] = 20  # all three idle past max_idle: every caller below sweeps them

    async def use(key: str) -> None:
        async with pool.lease(key, make):
            await asyncio.sleep(0)

    await asyncio.gather(*(use(k) for k in "abcabc"))
    assert all(c.closed for c in made[:3])
    await pool.aclose()
