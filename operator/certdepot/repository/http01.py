"""The plain-HTTP listener that answers the upstream CA's http-01 challenges.

Tokens live in the store, so whichever replica receives the CA's request can answer for
an order another replica placed."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certdepot.repository import store as tables
from certdepot.repository.store import Store


def create_http01_app(store: Store) -> Starlette:
    async def token(request: Request) -> Response:
        row = store.get(tables.http01_tokens, request.path_params["token"])
        if row is None:
            return PlainTextResponse("not found\n", status_code=404)
        return PlainTextResponse(row["key_authorization"])

    return Starlette(routes=[Route("/.well-known/acme-challenge/{token}", token)])
