"""Readiness follows the API server: reachable only while its last answer is recent."""

from __future__ import annotations

import asyncio

from certdepot.controller.ops.health import ApiReachability


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_not_reachable_before_the_first_answer() -> None:
    async def probe() -> None:
        return None

    api = ApiReachability(probe, clock=Clock())
    assert not api.reachable()
    assert await api.check()
    assert api.reachable()


async def test_an_answer_goes_stale_when_the_api_stops_answering() -> None:
    clock = Clock()
    up = True

    async def probe() -> None:
        if not up:
            raise ConnectionError("refused")

    api = ApiReachability(probe, interval=5, stale_after=15, clock=clock)
    assert await api.check()
    up = False
    clock.now += 10
    assert not await api.check()
    assert api.reachable()  # one missed probe is tolerated for stale_after
    clock.now += 6
    assert not api.reachable()
    up = True
    assert await api.check()
    assert api.reachable()


async def test_a_hanging_api_counts_as_unreachable() -> None:
    async def probe() -> None:
        await asyncio.sleep(10)

    api = ApiReachability(probe, interval=0.05, clock=Clock())
    assert not await api.check()
    assert not api.reachable()
