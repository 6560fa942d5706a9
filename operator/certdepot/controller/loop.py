"""One reconcile loop per object, woken by spec changes, Secret events or its own timer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("certdepot.operator")


class Wakeups:
    """Named wake-up events; a key is "<Kind>/<namespace>/<name>"."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, key: str) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def wake(self, key: str) -> None:
        if key in self._events:
            self._events[key].set()

    def wake_kind(self, *kinds: str) -> None:
        for key, event in self._events.items():
            if key.split("/", 1)[0] in kinds:
                event.set()

    def forget(self, key: str) -> None:
        self._events.pop(key, None)

    async def sleep(self, key: str, seconds: float, stopped: Any) -> None:
        """Sleep up to ``seconds``; return early when woken. Not at all once ``stopped``.

        Whoever sets ``stopped`` also cancels the loop's task (Supervisor.forget and
        stop_all), which ends the wait: no polling. Waking every sleeping loop once a second
        to look at the flag cost CPU in proportion to the objects (1,000 timers a second at
        1,000 CertificateDownloads)."""
        event = self.event(key)
        if stopped or seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()


async def run(
    key: str, step: Callable[[], Awaitable[float]], wakeups: Wakeups, stopped: Any
) -> None:
    wakeups.event(key)
    failures = 0
    try:
        while not stopped:
            try:
                delay = await step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Reconcilers turn their errors into status; what gets here is the API server
                # refusing the status patch itself. Keep the loop alive and try again.
                failures += 1
                delay = min(60.0, 2.0**failures)
                log.warning(
                    "%s: step failed (%s: %s); retry in %.0fs", key, type(exc).__name__, exc, delay
                )
            await wakeups.sleep(key, delay, stopped)
    finally:
        wakeups.forget(key)


def key_of(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace or ''}/{name}"
