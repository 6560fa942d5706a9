"""Whether the Kubernetes API server answers: readiness must not outlive the connection.

kopf's ready flag is set once, at start; an operator cut off from the API server afterwards
(a NetworkPolicy, a partition, an expired credential) would go on reporting Ready while it
can neither see nor change anything. :class:`ApiReachability` asks the API server for
``/version`` every ``interval`` seconds (readable by every identity through
``system:public-info-viewer``) and counts as reachable only while the last answer is at
most ``stale_after`` seconds old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("certdepot.operator")

DEFAULT_INTERVAL = 5.0
DEFAULT_STALE_AFTER = 15.0


class ApiReachability:
    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        interval: float = DEFAULT_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.interval = interval
        self.stale_after = stale_after
        self._clock = clock
        self._last_ok: float | None = None
        self._failing = False

    def reachable(self) -> bool:
        return self._last_ok is not None and self._clock() - self._last_ok <= self.stale_after

    async def check(self) -> bool:
        """One probe, bounded by ``interval``; records and returns the outcome."""
        try:
            await asyncio.wait_for(self._probe(), timeout=self.interval)
        except Exception as exc:  # any failure means "not reachable now"
            if not self._failing:
                log.warning("the Kubernetes API server does not answer (%s); not ready",
                            type(exc).__name__)
            self._failing = True
            return False
        if self._failing:
            log.info("the Kubernetes API server answers again")
        self._failing = False
        self._last_ok = self._clock()
        return True

    async def run(self) -> None:
        """Probe forever (cancel the task to stop)."""
        while True:
            started = self._clock()
            await self.check()
            await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))
