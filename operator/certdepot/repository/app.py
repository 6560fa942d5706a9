"""The repository's ASGI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from certdepot.acme.problems import AcmeProblem
from certdepot.repository import metrics
from certdepot.repository.http import (
    problem_response,
    repo_of,
    store_unavailable,
    store_unavailable_problem,
)
from certdepot.repository.routes import (
    accounts,
    admin,
    ari,
    authz,
    certificates,
    delegations,
    directory,
    download,
    orders,
    pki,
    star,
)
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.app")


async def _acme_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AcmeProblem)
    return await run_in_threadpool(problem_response, repo_of(request), exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "malformed"
    detail = {404: "no such resource", 405: "method not allowed"}.get(exc.status_code,
                                                                     str(exc.detail))
    return await run_in_threadpool(problem_response, repo_of(request),
                                   AcmeProblem(kind, detail, status=exc.status_code))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # A client that closed its connection (or was closed by a read deadline: httpproto)
    # before its body arrived: nothing to answer and nothing wrong here. 499 is only what
    # /metrics counts; no byte of it is sent.
    log.debug("client went away during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def _crash(request: Request, exc: Exception) -> Response:
    if store_unavailable(exc):
        # A database restart, not a bug: 503 + Retry-After tells clients to come back.
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return await run_in_threadpool(problem_response, repo_of(request),
                                       store_unavailable_problem())
    # Log the type only: exception text may carry request data.
    log.error("internal error on %s %s: %s", request.method, request.url.path,
              type(exc).__name__, exc_info=exc)
    return await run_in_threadpool(problem_response, repo_of(request),
                                   AcmeProblem("serverInternal", "internal server error"))


def create_app(repo: Repo, *, run_background: bool = False) -> Starlette:
    """The ACME front end over ``repo``. With ``run_background`` the app's lifespan also
    runs the renewal loop (the server does; in-process tests drive renewal directly)."""
    routes: list[BaseRoute] = [
        *directory.routes, *accounts.routes, *orders.routes, *authz.routes,
        *certificates.routes, *download.routes, *ari.routes, *delegations.routes,
        *star.routes, *metrics.routes, *admin.routes,
        *pki.routes,
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stoppers: list[Callable[[], Awaitable[None]]] = []
        if run_background:
            from certdepot.repository import livereload, renewal

            stoppers.append(renewal.start(repo))
            stoppers.extend(livereload.start_sources(repo))
        try:
            yield
        finally:
            for stop in stoppers:
                await stop()
            for task in list(repo.tasks):
                task.cancel()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={AcmeProblem: _acme_problem, HTTPException: _http_error,
                                        ClientDisconnect: _client_gone,
                                        # Database errors are also handled inside the
                                        # middleware, so /metrics counts their real
                                        # status; Exception is only seen outside it.
                                        sa.exc.SQLAlchemyError: _crash,
                                        Exception: _crash})
    app.state.repo = repo
    app.state.metrics = metrics.Metrics()
    counter = app.state.metrics.policy_refusals
    repo.count_refusal = lambda step, reason: counter.labels(step, reason).inc()
    reloads = app.state.metrics.config_reloads
    repo.count_reload = lambda source, result: reloads.labels(source, result).inc()
    app.add_middleware(metrics.RequestCounter, metrics=app.state.metrics)
    return app
