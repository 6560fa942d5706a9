"""Prometheus metrics and health endpoints of the repository.

``/healthz``: the process answers (no store access: liveness must not restart every pod
during a database outage). ``/readyz``: the store answers. ``/metrics``: request counts
by endpoint and status, key deliveries by tenant, policy refusals by step and reason
(grants.py), and per managed certificate its expiry
and consecutive renewal failures (read from the store at scrape time, so every replica
reports the shared truth).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certdepot.repository import certstore, consumers
from certdepot.repository import store as tables

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Metrics:
    """Names follow Prometheus conventions (``_total`` counters, ``_timestamp_seconds``
    for points in time); per-certificate series carry ``name``, the managed certificate's
    name, like the operator's and cert-manager's. docs/operations.md ("Metrics") lists them
    and the names they replaced."""

    def __init__(self) -> None:
        # One registry per app: several apps in one process (tests) must not collide.
        self.registry = CollectorRegistry()
        self.requests = Counter("certdepot_repository_requests_total",
                                "HTTP requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.deliveries = Counter("certdepot_repository_key_deliveries_total",
                                  "Private keys delivered (download extension)", ["tenant"],
                                  registry=self.registry)
        self.policy_refusals = Counter(
            "certdepot_repository_policy_refusals_total",
            "Requests and renewals refused because the grant they relied on no longer holds",
            ["step", "reason"], registry=self.registry)
        self.config_reloads = Counter(
            "certdepot_repository_config_reloads_total",
            "New configurations from the file or the Kubernetes resources, applied or "
            "rejected (invalid: the previous one stays in force)", ["source", "result"],
            registry=self.registry)
        self.expiration = Gauge("certdepot_repository_certificate_expiration_timestamp_seconds",
                                "notAfter of the current certificate of a managed entry, in "
                                "seconds since the epoch", ["name"], registry=self.registry)
        self.failures = Gauge("certdepot_repository_certificate_renewal_consecutive_failures",
                              "Consecutive failed renewal attempts of a managed entry (0 after "
                              "a success)", ["name"], registry=self.registry)
        # Per managed certificate: its consumers, and those on a revoked or superseded serial
        # (consumers.py; read from the store at scrape time like the gauges above).
        self.consumers = Gauge("certdepot_repository_certificate_consumers",
                               "Consumers (tenant, account, cluster, resource) known to hold "
                               "a serial of a managed certificate", ["name"],
                               registry=self.registry)
        self.superseded = Gauge("certdepot_repository_certificate_consumers_superseded",
                                "Consumers whose last delivery was a revoked or superseded "
                                "serial of a managed certificate", ["name"],
                                registry=self.registry)
        self.store_errors = Counter("certdepot_repository_metrics_store_errors_total",
                                    "Scrapes that could not read the store (gauges stale)",
                                    registry=self.registry)


class RequestCounter:
    """ASGI middleware: count each HTTP response by endpoint name and status."""

    def __init__(self, app: App, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            endpoint = scope.get("endpoint")
            name = getattr(endpoint, "__name__", "unmatched")
            self.metrics.requests.labels(name, str(status["code"])).inc()


def _scrape(request: Request) -> bytes:
    repo = request.app.state.repo
    metrics: Metrics = request.app.state.metrics
    try:
        for cfg in repo.config.certificates:
            cur = certstore.current_managed(repo.store, cfg.name)
            if cur is not None:
                metrics.expiration.labels(cfg.name).set(cur["not_after"])
            state = repo.store.get(tables.managed, cfg.name)
            metrics.failures.labels(cfg.name).set(state["failures"] if state else 0)
            total, behind = consumers.counts(repo, cfg.name, cur["id"] if cur else None)
            metrics.consumers.labels(cfg.name).set(total)
            metrics.superseded.labels(cfg.name).set(behind)
    except sa.exc.SQLAlchemyError:
        # During a database outage the request counts (its 503s) matter most: serve them
        # with the per-certificate gauges as last read.
        metrics.store_errors.inc()
    data: bytes = generate_latest(metrics.registry)
    return data


async def metrics_endpoint(request: Request) -> Response:
    return Response(await run_in_threadpool(_scrape, request),
                    media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def _store_ok(request: Request) -> bool:
    try:
        with request.app.state.repo.store.tx() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True


async def readyz(request: Request) -> Response:
    if await run_in_threadpool(_store_ok, request):
        return PlainTextResponse("ok\n")
    return PlainTextResponse("store unreachable\n", status_code=503)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
