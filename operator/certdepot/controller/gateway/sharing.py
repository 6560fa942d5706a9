"""Many objects, one request: what the operator asks a repository once for all who need it.

**Download coalescing.** One download session for many CertificateDownloads that ask for the
same certificate.

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

**Renewal information.** One renewalInfo (ARI) poll per certificate, on the schedule the
repository sets.

Every CertificateDownload holding a certificate registers here (``watch``); one task per
(repository account, certificate) asks the repository's renewalInfo, then waits what the
answer's ``Retry-After`` says (clamped to [floor, ceiling]) and asks again. When an answer
says "renew now" (the window has started: a newer certificate exists, or the repository
revoked this one in a rotation) it wakes every object holding that certificate at once, so
they re-fetch within one poll interval instead of at their next timed recheck.

The reaction time to a rotation is therefore at most the repository's ``ariRetryAfter``
(default 30 s; ceiling ``--renewal-info-seconds``) plus one download. The cost is one GET
per certificate per interval and cluster, however many objects hold it.

A certificate just downloaded (``watch(..., fresh=True)``) is not asked about at once: its
window is the local rule's until its first poll, which comes one interval later (the
repository's ``Retry-After`` as last answered for that directory, spread over the second
half of it so a mass rollout does not come back as one burst). Only when no answer from that
directory is known yet does one certificate ask at once, to learn the interval for all the
others. A rollout of N certificates thus costs no renewalInfo request per certificate, and a
rotation right after it is still noticed within one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from cryptography import x509

from certdepot.acme import crypto
from certdepot.controller.core import certinfo
from certdepot.controller.gateway.model import Downloaded, Endpoint, RenewalWindow

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


log = logging.getLogger("certdepot.operator")

Ask = Callable[[Endpoint, x509.Certificate], Awaitable[RenewalWindow | None]]


@dataclass(slots=True)  # one per object: no __dict__
class _Watch:
    endpoint: Endpoint
    cert: x509.Certificate
    holders: set[str] = field(default_factory=set)
    window: RenewalWindow | None = None
    task: asyncio.Task[None] | None = None


def watch_key(endpoint: Endpoint, cert: x509.Certificate) -> Hashable:
    return (
        endpoint.directory_url,
        endpoint.account_url,
        cert.issuer.public_bytes(),
        cert.serial_number,
    )


class RenewalWatch:
    def __init__(
        self,
        ask: Ask,
        wake: Callable[[str], None],
        now: Callable[[], datetime],
        *,
        floor: float = 5.0,
        ceiling: float = 300.0,
        error_delay: float = 30.0,
        jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0),  # noqa: S311 - spread
    ) -> None:
        self._ask = ask
        self._wake = wake
        self._now = now
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self.error_delay = error_delay
        self._watches: dict[Hashable, _Watch] = {}
        self._held: dict[str, Hashable] = {}  # holder -> the watch it is in
        self.polls = 0  # renewalInfo requests made (tests, metrics)
        # Per directory URL: the poll interval its last answer set, and the event that a
        # first answer came (fresh certificates wait for it rather than all asking at once).
        self._interval: dict[str, float] = {}
        self._learning: dict[str, asyncio.Event] = {}
        self.jitter = jitter

    def watch(
        self, holder: str, endpoint: Endpoint, cert: x509.Certificate, *, fresh: bool = False
    ) -> RenewalWindow | None:
        """``holder`` (a wake key) now holds ``cert``; the latest answer about it, if any.

        ``fresh``: the certificate was just downloaded, so its first poll waits an interval."""
        key = watch_key(endpoint, cert)
        if self._held.get(holder) != key:
            self.forget(holder)
            self._held[holder] = key
        w = self._watches.get(key)
        if w is None:
            w = self._watches[key] = _Watch(endpoint, cert)
            w.task = asyncio.get_running_loop().create_task(
                self._poll(key, w, fresh), name=f"renewalInfo {cert.serial_number:x}"
            )
        w.holders.add(holder)
        return w.window

    def forget(self, holder: str) -> None:
        """``holder`` is gone or holds another certificate now."""
        key = self._held.pop(holder, None)
        w = self._watches.get(key) if key is not None else None
        if w is None:
            return
        w.holders.discard(holder)
        if not w.holders:
            del self._watches[key]
            if w.task is not None:
                w.task.cancel()

    def delay(self, window: RenewalWindow | None) -> float:
        if window is None or window.retry_after is None:
            return self.ceiling
        return min(self.ceiling, max(self.floor, window.retry_after))

    async def _first_wait(self, url: str, asking: list[bool]) -> None:
        """Before a fresh certificate's first poll: one interval of its directory, learnt
        from the first answer if none is known yet (then ``asking`` says this poll asks now
        to learn it). Never longer than ``ceiling``."""
        began = time.monotonic()
        if url not in self._interval:
            learning = self._learning.get(url)
            if learning is None:
                self._learning[url] = asyncio.Event()
                asking.append(True)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(learning.wait(), self.ceiling)
        interval = self._interval.get(url, self.ceiling) * self.jitter()
        await asyncio.sleep(max(0.0, began + min(interval, self.ceiling) - time.monotonic()))

    def _learnt(self, url: str, interval: float | None) -> None:
        """An answer (its poll interval) or a failure (None) from ``url``: fresh certificates
        waiting to learn the interval may go on."""
        if interval is not None:
            self._interval[url] = interval
        learning = self._learning.pop(url, None)
        if learning is not None:
            learning.set()

    async def _poll(self, key: Hashable, w: _Watch, fresh: bool = False) -> None:
        url = w.endpoint.directory_url
        asking: list[bool] = []
        if fresh:
            await self._first_wait(url, asking)
        try:
            await self._polls(key, w)
        finally:
            if asking:  # cancelled before its answer: the others wait no longer
                self._learnt(url, None)

    async def _polls(self, key: Hashable, w: _Watch) -> None:
        woken_for: RenewalWindow | None = None
        url = w.endpoint.directory_url
        while self._watches.get(key) is w:
            self.polls += 1
            try:
                w.window = await self._ask(w.endpoint, w.cert)
                delay = self.delay(w.window)
                self._learnt(url, delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info(
                    "renewalInfo for serial %x failed (%s); again in %.0fs",
                    w.cert.serial_number,
                    type(exc).__name__,
                    self.error_delay,
                )
                delay = self.error_delay
                self._learnt(url, None)
            due = w.window is not None and w.window.start <= self._now()
            if due and w.window != woken_for:
                woken_for = w.window
                for holder in list(w.holders):
                    self._wake(holder)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        self._held.clear()
        for w in watches:
            if w.task is not None:
                w.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w.task
