"""The embedded CA's revocation status over HTTP: the CRL and OCSP URLs its certificates
name (issuers/revocation_status.py). Unauthenticated, like every CRL and OCSP responder."""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme.problems import AcmeProblem
from certdepot.repository.http import read_body, repo_of, threaded
from certdepot.repository.issuers.local_ca import LocalCa
from certdepot.repository.issuers.revocation_status import StatusPublisher

#: An OCSP request names one certificate: a few hundred bytes.
MAX_OCSP_REQUEST = 8192
CRL_TYPE = "application/pkix-crl"
OCSP_RESPONSE = "application/ocsp-response"


def _publisher(request: Request) -> StatusPublisher:
    issuer = repo_of(request).issuers.get(request.path_params["issuer"])
    if not isinstance(issuer, LocalCa):
        raise AcmeProblem("malformed", "no such certificate authority here", status=404)
    return issuer.status


@threaded
def crl(request: Request) -> Response:
    der = _publisher(request).crl(repo_of(request).store)
    return Response(der, media_type=CRL_TYPE, headers={"Cache-Control": "max-age=300"})


def _ocsp_answer(request: Request, der: bytes) -> Response:
    answer = _publisher(request).ocsp(repo_of(request).store, der)
    return Response(answer, media_type=OCSP_RESPONSE, headers={"Cache-Control": "no-cache"})


async def ocsp_post(request: Request) -> Response:
    _publisher(request)  # 404 before reading a body for nobody
    der = await read_body(request, MAX_OCSP_REQUEST)
    return await threaded(lambda r: _ocsp_answer(r, der))(request)


@threaded
def ocsp_get(request: Request) -> Response:
    # RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER request}
    encoded = urllib.parse.unquote(request.path_params["encoded"])
    if len(encoded) > MAX_OCSP_REQUEST * 2:
        raise AcmeProblem("malformed", "OCSP request too large", status=413)
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        der = b""  # answered malformedRequest by the responder
    return _ocsp_answer(request, der)


routes = [
    Route("/ca/{issuer}/crl", crl, methods=["GET"]),
    Route("/ca/{issuer}/ocsp", ocsp_post, methods=["POST"]),
    Route("/ca/{issuer}/ocsp/{encoded:path}", ocsp_get, methods=["GET"]),
]
