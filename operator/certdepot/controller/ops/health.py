"""Liveness (/healthz) and readiness (/readyz) on their own port, plus /metrics on another;
and whether the Kubernetes API server answers, which readiness depends on.

Readiness must not outlive the connection. kopf's ready flag is set once, at start; an
operator cut off from the API server afterwards (a NetworkPolicy, a partition, an expired
credential) would go on reporting Ready while it can neither see nor change anything.
:class:`ApiReachability` asks the API server for ``/version`` every ``interval`` seconds
(readable by every identity through ``system:public-info-viewer``) and counts as reachable
only while the last answer is at most ``stale_after`` seconds old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("certdepot.operator")


async def start_health(
    host: str,
    port: int,
    is_ready: Callable[[], bool],
    is_live: Callable[[], bool],
) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return (
            web.Response(text="ok\n") if is_live() else web.Response(status=503, text="not live\n")
        )

    async def readyz(_: web.Request) -> web.Response:
        return (
            web.Response(text="ready\n")
            if is_ready()
            else web.Response(status=503, text="not ready\n")
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return await _serve(app, host, port)


async def start_metrics(host: str, port: int, registry: CollectorRegistry) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return await _serve(app, host, port)


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


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
