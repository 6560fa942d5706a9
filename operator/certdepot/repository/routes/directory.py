"""Directory (RFC 8555 §7.1.1) and newNonce (§7.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.repository import views
from certdepot.repository.http import acme_headers, acme_json, repo_of, threaded


@threaded
def directory(request: Request) -> Response:
    repo = repo_of(request)
    return acme_json(repo, views.directory(repo).to_json())


@threaded
def new_nonce(request: Request) -> Response:
    repo = repo_of(request)
    status = 200 if request.method == "HEAD" else 204
    return Response(status_code=status, headers=acme_headers(repo))


routes = [
    Route("/directory", directory, methods=["GET"]),
    Route("/acme/new-nonce", new_nonce, methods=["GET", "HEAD"]),
]
