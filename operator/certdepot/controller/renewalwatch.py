"""One renewalInfo (ARI) poll per certificate, on the schedule the repository sets.

Every CertificateDownload holding a certificate registers here (``watch``); one task per
(repository account, certificate) asks the repository's renewalInfo, then waits what the
answer's ``Retry-After`` says (clamped to [floor, ceiling]) and asks again. When an answer
says "renew now" (the window has started: a newer certificate exists, or the repository
revoked this one in a rotation) it wakes every object holding that certificate at once, so
they re-fetch within one poll interval instead of at their next timed recheck.

The reaction time to a rotation is therefore at most the repository's ``ariRetryAfter``
(default 30 s; ceiling ``--renewal-info-seconds``) plus one download. The cost is one GET
per certificate per interval and cluster, however many objects hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from certdepot.controller.decisions import RenewalWindow
from certdepot.controller.gateway import Endpoint

log = logging.getLogger("certdepot.operator")

Ask = Callable[[Endpoint, x509.Certificate], Awaitable[RenewalWindow | None]]


@dataclass
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

    def watch(
        self, holder: str, endpoint: Endpoint, cert: x509.Certificate
    ) -> RenewalWindow | None:
        """``holder`` (a wake key) now holds ``cert``; the latest answer about it, if any."""
        key = watch_key(endpoint, cert)
        if self._held.get(holder) != key:
            self.forget(holder)
            self._held[holder] = key
        w = self._watches.get(key)
        if w is None:
            w = self._watches[key] = _Watch(endpoint, cert)
            w.task = asyncio.get_running_loop().create_task(
                self._poll(key, w), name=f"renewalInfo {cert.serial_number:x}"
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

    async def _poll(self, key: Hashable, w: _Watch) -> None:
        woken_for: RenewalWindow | None = None
        while self._watches.get(key) is w:
            self.polls += 1
            try:
                w.window = await self._ask(w.endpoint, w.cert)
                delay = self.delay(w.window)
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
