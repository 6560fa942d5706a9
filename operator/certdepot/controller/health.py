"""Liveness (/healthz) and readiness (/readyz) on their own port, plus /metrics on another."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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
