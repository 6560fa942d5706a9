"""AcmeClients kept per (repository endpoint, account) and reused across downloads, so a
download finds the directory, TLS context, a kept-alive connection and a nonce already
there instead of building them per call.

Each client serves one caller at a time (a free list per key, like a connection pool):
sharing one client among hundreds of concurrent downloads would put them all in one httpx
connection pool, whose bookkeeping grows with requests x connections (measured: more
operator CPU than a client per download).

A client is keyed by everything the repository resource contributes to it (directory URL,
CA bundle, account key, account URL): when any of them changes, the next call gets a new
client and the old ones are closed once idle. Clients are also replaced after ``max_age``
(the directory is re-read and a kept nonce never nears the server's nonce lifetime) and
closed after ``max_idle`` without use.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from certdepot.acme import jws
from certdepot.acme.client import AcmeClient
from certdepot.controller.gateway import Endpoint


def endpoint_key(endpoint: Endpoint) -> tuple[str, str, str, str]:
    """What makes two endpoints the same client; the key itself appears only as its
    public thumbprint."""
    ca = hashlib.sha256(endpoint.ca_pem).hexdigest() if endpoint.ca_pem is not None else ""
    thumbprint = jws.jwk_thumbprint(jws.public_jwk(endpoint.account_key)).hex()
    return (endpoint.directory_url, ca, thumbprint, endpoint.account_url or "")


@dataclass
class _Idle:
    client: AcmeClient
    created: float
    last_used: float


class ClientPool:
    def __init__(
        self,
        *,
        max_age: float = 300.0,
        max_idle: float = 60.0,
        max_idle_clients: int = 64,
        max_active: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._max_idle = max_idle
        self._max_idle_clients = max_idle_clients
        self._clock = clock
        self._idle: dict[Hashable, list[_Idle]] = {}
        # At most max_active clients (so connections) per key in use at once; more callers
        # wait. Unbounded, a restart with thousands of certificates opened thousands of
        # connections at once, and an overloaded operator then reused kept-alive ones past
        # the repository's idle timeout.
        self._max_active = max_active
        self._slots: dict[Hashable, asyncio.Semaphore] = {}

    def __len__(self) -> int:
        """Idle clients kept."""
        return sum(len(v) for v in self._idle.values())

    def _fit(self, entry: _Idle, now: float) -> bool:
        return now - entry.created <= self._max_age and now - entry.last_used <= self._max_idle

    @asynccontextmanager
    async def lease(
        self, key: Hashable, make: Callable[[], AcmeClient]
    ) -> AsyncIterator[AcmeClient]:
        """A client for ``key``, the caller's alone for the ``async with`` body: the most
        recently used idle one (freshest connection and nonce), else one made by ``make``."""
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self._max_active)
        async with slots, self._lease(key, make) as client:
            yield client

    @asynccontextmanager
    async def _lease(
        self, key: Hashable, make: Callable[[], AcmeClient]
    ) -> AsyncIterator[AcmeClient]:
        now = self._clock()
        await self._sweep(now)
        free = self._idle.get(key) or []
        entry = free.pop() if free else _Idle(make(), created=now, last_used=now)
        ok = False
        try:
            yield entry.client
            ok = True
        finally:
            # After a failure (timeout, dropped connection, a problem document) the client
            # is not kept: a fresh one next time costs little and trusts no half state.
            entry.last_used = self._clock()
            if ok and self._fit(entry, entry.last_used) and len(self) < self._max_idle_clients:
                self._idle.setdefault(key, []).append(entry)
            else:
                await entry.client.aclose()

    async def _sweep(self, now: float) -> None:
        """Close idle clients no longer fit (e.g. of a repository whose URL or key changed)."""
        # Take them out before the first await: concurrent callers sweep too, and one that
        # resumed inside this loop found keys another had already deleted (KeyError).
        stale: list[_Idle] = []
        for key in list(self._idle):
            keep = [e for e in self._idle[key] if self._fit(e, now)]
            stale += [e for e in self._idle[key] if not self._fit(e, now)]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for entry in stale:
            await entry.client.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for entries in idle.values():
            for entry in entries:
                await entry.client.aclose()
