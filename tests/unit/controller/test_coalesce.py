"""Download coalescing: one session for many callers, never the caller's own serial again."""

from __future__ import annotations

import asyncio

import pytest

from certdepot.acme.problems import AcmeProblem
from certdepot.controller.core import certinfo
from certdepot.controller.gateway.model import Downloaded
from certdepot.controller.gateway.sharing import (
    DownloadCoalescer,
    SharedCalls,
    leaf_serial,
    names_key,
)

from .fakes import MiniCA, pem

KEY = ("endpoint", ("a.example",))


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Repo:
    """Serves the current certificate; each call is one download session."""

    def __init__(self, ca: MiniCA) -> None:
        self.ca = ca
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.renew()

    def renew(self) -> None:
        chain, key = self.ca.issue(["a.example"])
        self.current = Downloaded(pem(chain), key)

    async def fetch(self) -> Downloaded:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.current


@pytest.fixture
def repo(ca: MiniCA) -> Repo:
    return Repo(ca)


async def test_concurrent_callers_share_one_download(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    repo.gate = asyncio.Event()
    calls = [asyncio.create_task(c.download(KEY, None, repo.fetch)) for _ in range(20)]
    await asyncio.sleep(0)
    repo.gate.set()
    results = await asyncio.gather(*calls)
    assert repo.calls == 1
    assert all(r is repo.current for r in results)
    assert c.shared == 19


async def test_result_reused_within_window_then_expires(repo: Repo) -> None:
    ticks = Ticks()
    c = DownloadCoalescer(30.0, clock=ticks)
    await c.download(KEY, None, repo.fetch)
    ticks.now += 29
    await c.download(KEY, None, repo.fetch)
    assert repo.calls == 1
    ticks.now += 1
    await c.download(KEY, None, repo.fetch)
    assert repo.calls == 2


async def test_expired_entries_are_evicted(repo: Repo) -> None:
    ticks = Ticks()
    c = DownloadCoalescer(30.0, clock=ticks)
    await c.download(KEY, None, repo.fetch)
    ticks.now += 31
    await c.download(("other", ("b.example",)), None, repo.fetch)
    assert len(c) == 1  # the first one is gone, not just ignored


async def test_entries_are_bounded(repo: Repo) -> None:
    c = DownloadCoalescer(30.0, max_entries=3)
    for i in range(10):
        await c.download(("endpoint", (f"n{i}",)), None, repo.fetch)
    assert len(c) == 3


async def test_own_serial_is_never_served_from_an_older_download(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    first = await c.download(KEY, None, repo.fetch)
    mine = leaf_serial(first)
    # The repository renewed (ARI): a caller holding the old serial must not get it back.
    repo.renew()
    again = await c.download(KEY, mine, repo.fetch)
    assert repo.calls == 2
    assert leaf_serial(again) != mine
    # ... and the fresh result now serves the others.
    other = await c.download(KEY, None, repo.fetch)
    assert other is again and repo.calls == 2


async def test_renewing_callers_share_the_one_fresh_download(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    old = leaf_serial(await c.download(KEY, None, repo.fetch))
    repo.renew()
    repo.gate = asyncio.Event()
    calls = [asyncio.create_task(c.download(KEY, old, repo.fetch)) for _ in range(10)]
    await asyncio.sleep(0)
    repo.gate.set()
    results = await asyncio.gather(*calls)
    assert repo.calls == 2
    assert {leaf_serial(r) for r in results} == {leaf_serial(repo.current)}


async def test_nothing_newer_costs_one_more_download_not_a_loop(repo: Repo) -> None:
    # The repository has nothing newer: each caller still gets a download begun after it
    # asked. The first starts one; the rest arrived after it began, so they share one more.
    c = DownloadCoalescer(30.0)
    old = leaf_serial(await c.download(KEY, None, repo.fetch))
    results = await asyncio.gather(*(c.download(KEY, old, repo.fetch) for _ in range(5)))
    assert repo.calls == 3
    assert {leaf_serial(r) for r in results} == {old}


async def test_joining_a_flight_started_after_arrival_accepts_any_serial(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    repo.gate = asyncio.Event()
    starter = asyncio.create_task(c.download(KEY, None, repo.fetch))
    await asyncio.sleep(0)
    # Arrives while the first download is in flight, holding the serial it will return.
    joiner = asyncio.create_task(c.download(KEY, leaf_serial(repo.current), repo.fetch))
    await asyncio.sleep(0)
    repo.gate.set()
    await asyncio.gather(starter, joiner)
    assert repo.calls == 2  # the in-flight one began before the joiner asked


async def test_failure_reaches_every_waiter_and_is_not_kept(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    repo.gate = asyncio.Event()
    repo.fail = AcmeProblem("serverInternal", "boom")
    calls = [asyncio.create_task(c.download(KEY, None, repo.fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    repo.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, AcmeProblem) for o in outcomes)
    assert repo.calls == 1
    assert len(c) == 0
    repo.fail = None
    repo.gate = None
    assert await c.download(KEY, None, repo.fetch) is repo.current
    assert repo.calls == 2


async def test_a_cancelled_caller_leaves_the_download_to_the_others(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    repo.gate = asyncio.Event()
    first = asyncio.create_task(c.download(KEY, None, repo.fetch))
    second = asyncio.create_task(c.download(KEY, None, repo.fetch))
    await asyncio.sleep(0)
    first.cancel()
    repo.gate.set()
    assert await second is repo.current
    assert repo.calls == 1


async def test_window_zero_disables_sharing(repo: Repo) -> None:
    c = DownloadCoalescer(0.0)
    repo.gate = asyncio.Event()
    calls = [asyncio.create_task(c.download(KEY, None, repo.fetch)) for _ in range(4)]
    await asyncio.sleep(0)
    repo.gate.set()
    await asyncio.gather(*calls)
    await c.download(KEY, None, repo.fetch)
    assert repo.calls == 5
    assert len(c) == 0


async def test_aclose_cancels_downloads_in_flight(repo: Repo) -> None:
    c = DownloadCoalescer(30.0)
    repo.gate = asyncio.Event()
    call = asyncio.create_task(c.download(KEY, None, repo.fetch))
    await asyncio.sleep(0)
    await c.aclose()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(c) == 0


def test_names_key_ignores_order_and_case() -> None:
    assert names_key(["B.example", "a.example"]) == names_key(["a.example", "b.example"])


def test_leaf_serial_matches_secret_inspection(ca: MiniCA) -> None:
    chain, key = ca.issue(["a.example"])
    assert leaf_serial(Downloaded(pem(chain), key)) == certinfo.cert_info(chain[0]).serial


async def test_shared_calls_share_concurrent_and_recent_answers() -> None:
    now = [0.0]
    shared: SharedCalls[int] = SharedCalls(2.0, clock=lambda: now[0])
    calls = 0

    async def ask() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    assert await asyncio.gather(*(shared.call("k", ask) for _ in range(5))) == [1] * 5
    now[0] = 1.9
    assert await shared.call("k", ask) == 1 and calls == 1  # still within the window
    assert await shared.call("other", ask) == 2  # another key asks on its own
    now[0] = 2.1
    assert await shared.call("k", ask) == 3  # the window has passed


async def test_shared_calls_keep_no_failure_and_can_be_off() -> None:
    shared: SharedCalls[int] = SharedCalls(10.0)
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("repository down")
        return attempts

    with pytest.raises(RuntimeError):
        await shared.call("k", flaky)
    assert await shared.call("k", flaky) == 2
    off: SharedCalls[int] = SharedCalls(0.0)
    assert [await off.call("k", flaky) for _ in range(2)] == [3, 4]
