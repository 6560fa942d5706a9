"""RFC 8739 §3.3: the STAR certificate URL of an auto-renewal order, and cancellation."""

from __future__ import annotations

import datetime as dt

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme import fields
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import grants, star
from certdepot.repository import store as tables
from certdepot.repository.http import Signed, repo_of, verify_post
from certdepot.repository.routes.certificates import pem_response


def _http_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


async def star_certificate(request: Request) -> Response:
    signed = await verify_post(request) if request.method == "POST" else None
    return await run_in_threadpool(_star_certificate, request, signed)


def _star_certificate(request: Request, signed: Signed | None) -> Response:
    repo = repo_of(request)
    order = repo.store.get(tables.orders, request.path_params["order"])
    if signed is not None:
        assert signed.account is not None
        if order is None or order["account_id"] != signed.account["id"]:
            raise AcmeProblem("malformed", "no such certificate", status=404)
    elif order is None or not order["data"].get("auto_renewal", {}).get(
            fields.ALLOW_CERTIFICATE_GET):
        # Unauthenticated GET only where the order asked for it (the URL is the capability).
        raise AcmeProblem("malformed", "no such certificate", status=404)
    if order is None or not order["data"].get("auto_renewal") or not order["cert_id"]:
        raise AcmeProblem("malformed", "no such certificate", status=404)
    star.require_active(repo, order)
    # The unauthenticated GET is served to whoever holds the URL: check the grant of the
    # account that placed the order.
    grants.require(repo, order, signed.account if signed else grants.owner(repo, order),
                   fields.STAR_CERTIFICATE)
    cert = repo.store.get(tables.certificates, order["cert_id"])
    assert cert is not None
    return pem_response(repo, cert, {
        fields.HEADER_CERT_NOT_BEFORE: _http_date(cert["not_before"]),
        fields.HEADER_CERT_NOT_AFTER: _http_date(cert["not_after"])})


routes = [Route("/acme/star/{order}", star_certificate, methods=["GET", "POST"])]
