"""Short store leases kept alive by a heartbeat while their holder works.

A replica killed mid-renewal (SIGKILL, OOM) must not block an entry for long: the lease
lives ``LEASE_SECONDS`` and the working replica extends it every third of that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from certdepot.repository.state import Repo

LEASE_SECONDS = 30.0


@contextlib.asynccontextmanager
async def held(repo: Repo, name: str, ttl: float = LEASE_SECONDS) -> AsyncIterator[bool]:
    """``async with held(repo, name) as mine:`` — ``mine`` is False when another replica
    holds it; when True the lease is extended until the block ends, then released."""
    store, holder = repo.store, repo.replica_id
    if not await asyncio.to_thread(store.acquire_lease, name, holder, ttl):
        yield False
        return

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            await asyncio.to_thread(store.acquire_lease, name, holder, ttl)

    beat = asyncio.get_running_loop().create_task(heartbeat(), name=f"lease-{name}")
    try:
        yield True
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beat
        await asyncio.to_thread(store.release_lease, name, holder)
