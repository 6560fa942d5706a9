"""One download session for many CertificateDownloads that ask for the same certificate.

In one cluster, many CertificateDownloads (one per namespace, say) often ask the same
repository, as the same account, for the same name set. Each would otherwise run its own
download session (JWS requests, a repository transaction, a delivery record) for the very
same bytes. Here concurrent callers share the one download in flight (single-flight), and
a completed result is reused for ``window`` seconds.

Rules (operations.md, "Download coalescing"):

- A caller passes the serial its Secret already holds. A result with that serial is never
  handed to it from before its call: it is renewing or reissuing and asks for a download
  that starts after it asked (its own, or one another caller started meanwhile).
- A failed download is not kept: every caller waiting on it gets the error; the next call
  downloads again.
- Results (certificate and private key) live only in this process's memory, in at most
  ``max_entries`` entries, dropped once their window has passed; nothing here is logged.
- ``window <= 0`` turns all of it off: every call downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from certdepot.acme import crypto
from certdepot.controller.core import certinfo
from certdepot.controller.gateway import Downloaded

Fetch = Callable[[], Awaitable[Downloaded]]
T = TypeVar("T")


@dataclass
class _Flight:
    seq: int  # order of starting: a flight with seq > a caller's arrival started after it
    task: asyncio.Task[tuple[Downloaded, str]]
    done_at: float | None = None


def leaf_serial(result: Downloaded) -> str:
    """The serial in the form the Secret inspection reports it (certinfo.cert_info)."""
    return certinfo.cert_info(crypto.parse_pem_chain(result.chain_pem)[0]).serial


class DownloadCoalescer:
    def __init__(
        self,
        window: float,
        *,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._max_entries = max_entries
        self._clock = clock
        self._flights: dict[Hashable, _Flight] = {}
        self._seq = 0
        self.shared = 0  # calls answered by another caller's download (metrics, tests)

    def __len__(self) -> int:
        return len(self._flights)

    async def download(self, key: Hashable, current_serial: str | None, fetch: Fetch) -> Downloaded:
        """The result for ``key``: shared if fit for this caller, else from ``fetch``."""
        if self.window <= 0:
            return await fetch()
        arrival = self._seq
        self._sweep()
        flight = self._flights.get(key)
        if flight is None:
            flight = self._start(key, fetch)
        result, serial = await self._await(flight)
        if flight.seq > arrival or serial != current_serial:
            if flight.seq <= arrival:
                self.shared += 1
            return result
        # Started before this call and holds the caller's own serial: the caller wants a
        # download that begins after it asked. Join one another such caller started, or
        # start it.
        newer = self._flights.get(key)
        if newer is None or newer.seq <= arrival:
            newer = self._start(key, fetch)
        result, _ = await self._await(newer)
        return result

    def _start(self, key: Hashable, fetch: Fetch) -> _Flight:
        self._seq += 1

        async def run() -> tuple[Downloaded, str]:
            result = await fetch()
            return result, leaf_serial(result)

        task = asyncio.create_task(run(), name="certdepot download")
        flight = _Flight(self._seq, task)
        self._flights[key] = flight

        def finished(done: asyncio.Task[tuple[Downloaded, str]]) -> None:
            failed = done.cancelled() or done.exception() is not None
            if failed:
                # Not kept: the waiters get the error, the next call downloads again.
                if self._flights.get(key) is flight:
                    del self._flights[key]
            else:
                flight.done_at = self._clock()

        task.add_done_callback(finished)
        self._bound()
        return flight

    async def _await(self, flight: _Flight) -> tuple[Downloaded, str]:
        # shield: a cancelled caller (its object deleted, shutdown) leaves the download
        # running for the others.
        return await asyncio.shield(flight.task)

    def _expired(self, flight: _Flight, now: float) -> bool:
        return flight.done_at is not None and now - flight.done_at >= self.window

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, f in self._flights.items() if self._expired(f, now)]:
            del self._flights[key]

    def _bound(self) -> None:
        """Keep at most max_entries: drop the oldest completed results first."""
        excess = len(self._flights) - self._max_entries
        if excess <= 0:
            return
        done = [(f.done_at, k) for k, f in self._flights.items() if f.done_at is not None]
        done.sort(key=lambda item: item[0] or 0.0)
        for _, key in done[:excess]:
            del self._flights[key]

    async def aclose(self) -> None:
        """Cancel downloads still in flight (shutdown) and forget every result."""
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            flight.task.cancel()
        for flight in flights.values():
            with contextlib.suppress(BaseException):
                await flight.task


def names_key(dns_names: Sequence[str]) -> tuple[str, ...]:
    """The same name set in any order or case is the same certificate."""
    return tuple(sorted({n.lower() for n in dns_names}))


@dataclass
class _Call(Generic[T]):
    task: asyncio.Task[T]
    done_at: float | None = None


class SharedCalls(Generic[T]):
    """Concurrent calls with one key share one call, and its result for ``window`` seconds
    after it completes (``window <= 0``: only while it runs); a failure is not kept. For
    answers that are the same for every caller, such as a certificate's ARI renewal window,
    which a thousand CertificateDownloads of one certificate would otherwise each ask for,
    or a GET that many queued reconciles miss at once."""

    def __init__(
        self, window: float, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._max_entries = max_entries
        self._clock = clock
        self._calls: dict[Hashable, _Call[T]] = {}
        self.shared = 0

    def _fresh(self, call: _Call[T], now: float) -> bool:
        return call.done_at is None or now - call.done_at < self.window

    async def call(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        found = self._calls.get(key)
        if found is not None and self._fresh(found, now):
            self.shared += 1
            return await asyncio.shield(found.task)
        if len(self._calls) >= self._max_entries:
            self._calls = {k: c for k, c in self._calls.items() if self._fresh(c, now)}
        call = _Call(asyncio.create_task(_awaited(make), name="certdepot shared call"))
        self._calls[key] = call

        def finished(task: asyncio.Task[T]) -> None:
            failed = task.cancelled() or task.exception() is not None
            if failed or self.window <= 0:
                if self._calls.get(key) is call:
                    del self._calls[key]
            else:
                call.done_at = self._clock()

        call.task.add_done_callback(finished)
        # shield: a cancelled caller leaves the call running for the others.
        return await asyncio.shield(call.task)


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
