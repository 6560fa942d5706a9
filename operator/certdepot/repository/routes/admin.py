"""The admin HTTP API: what ``certdepot repository rotate`` and ``inventory`` do, over HTTPS.

Authentication: ``Authorization: Bearer <token>``, compared in constant time with the token
the configuration names (``admin.tokenFile`` / ``admin.tokenEnv``, read at each request).
No ``admin`` section: every admin path answers 404, as if it did not exist. Errors are
problem documents like the ACME API's (docs/operations.md, "Admin API").

- ``POST /admin/v1/certificates/{name}/rotate``  body ``{"reason": "keyCompromise"}``
- ``GET  /admin/v1/inventory[?stale=true]``
- ``GET  /admin/v1/tenants``, ``POST /admin/v1/tenants`` body ``{"name": "cluster-eu"}``,
  ``POST /admin/v1/tenants/{name}/rotate``, ``DELETE /admin/v1/tenants/{name}[?force=true]``:
  what ``certdepot repository tenant list|create|rotate|delete`` do; credentials are in the
  answer (shown once, never logged)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme import jsonparse
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import inventory, rotation, tenants
from certdepot.repository.http import problem_response, read_body, repo_of

log = logging.getLogger("certdepot.repository.admin")

#: An admin request body is a small JSON object.
MAX_ADMIN_BODY = 4096


ROTATION_FAILED = "urn:certdepot:error:rotationFailed"


def refusal(request: Request) -> Response | None:
    """None when the request carries the admin token; else the answer to give."""
    repo = repo_of(request)
    admin = repo.config.admin
    if admin is None:
        return problem_response(repo, AcmeProblem("malformed", "no such resource", status=404))
    expected = admin.token()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        log.error("admin API: the configured token is unreadable or too short")
    if expected is not None and scheme.lower() == "bearer" and _same(given.strip(), expected):
        return None
    log.warning("admin API: %s %r refused (no valid bearer token)", request.method,
                request.url.path)
    return problem_response(
        repo, AcmeProblem("unauthorized", "admin API: a valid bearer token is required",
                          status=401), headers={"WWW-Authenticate": 'Bearer realm="certdepot"'})


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of the two tokens' SHA-256 digests: equal lengths, so not
    even the token's length leaks through timing (``compare_digest`` returns early on a
    length mismatch)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def json_response(doc: object, status: int = 200) -> Response:
    return Response(json.dumps(doc, indent=1), status_code=status,
                    media_type="application/json", headers={"Cache-Control": "no-store"})


async def read_json_object(request: Request) -> dict[str, object]:
    """The request's body: a small JSON object (empty body: ``{}``), parsed by the one
    strict parser every client document goes through (UTF-8 only, no duplicate members, no
    NaN, bounded depth): a duplicate ``name`` must not mean one thing to a proxy or audit
    log and another here."""
    body = await read_body(request, MAX_ADMIN_BODY)
    if not body:
        return {}
    ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if ctype != "application/json":
        raise AcmeProblem("malformed", "the body must be JSON, sent with Content-Type: "
                          "application/json", status=415)
    try:
        return jsonparse.loads_object(body, what="the body", max_bytes=MAX_ADMIN_BODY)
    except jsonparse.JsonError as exc:
        raise AcmeProblem("malformed", f"the body must be a JSON object ({exc})") from None


#: ``?force=`` values; anything else is refused rather than read as "no".
FORCE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
         "": False}


def force_of(request: Request) -> bool:
    values = request.query_params.getlist("force")
    if len(values) > 1 or any(k != "force" for k in request.query_params):
        raise AcmeProblem("malformed", "the only query parameter is force=true|false, once")
    value = FORCE.get(values[0].lower() if values else "")
    if value is None:
        raise AcmeProblem("malformed", "force must be true or false")
    return value


async def rotate(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    doc = await read_json_object(request)
    if not isinstance(doc.get("reason", "unspecified"), str):
        raise AcmeProblem("malformed", 'the body must be {"reason": "<CRLReason name>"}')
    name = request.path_params["name"]
    reason = str(doc.get("reason", "unspecified"))
    if reason not in rotation.REASONS:
        raise AcmeProblem("badRevocationReason", f"unknown reason {reason!r} (use one of "
                          f"{', '.join(rotation.REASONS)})")
    if repo.config.certificate(name) is None:
        raise AcmeProblem("malformed", f"no managed certificate {name!r}", status=404)
    client = request.client.host if request.client else "?"
    try:
        done = await rotation.rotate(repo, name, reason, requested_by=f"admin API from {client}")
    except rotation.RotationError as exc:
        raise AcmeProblem(ROTATION_FAILED, str(exc), status=409) from None
    return json_response(done.as_json())


async def inventory_doc(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    stale = request.query_params.get("stale", "").lower() in ("1", "true", "yes")
    doc = await run_in_threadpool(inventory.document, repo.config, repo.store, stale=stale)
    return json_response(doc)


TENANTS_API_VERSION = "certdepot.io/tenants/v1"
TENANT_HAS_ACCOUNTS = "urn:certdepot:error:tenantHasAccounts"


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def tenant_list(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    rows = await run_in_threadpool(tenants.list_tenants, repo.config, repo.store)
    return json_response({"apiVersion": TENANTS_API_VERSION, "tenants": rows})


async def tenant_create(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    name = (await read_json_object(request)).get("name")
    if not isinstance(name, str):
        raise AcmeProblem("malformed", 'the body must be {"name": "<tenant>"}')
    try:
        creds = await run_in_threadpool(tenants.create_tenant, repo.store, repo.vault, name)
    except tenants.BadTenantName as exc:
        raise AcmeProblem("malformed", str(exc)) from None
    except tenants.TenantExists:
        raise AcmeProblem("malformed", f"tenant {name!r} already exists (rotate its key "
                          "instead)", status=409) from None
    log.info("admin API from %s: tenant %s created", _client(request), name)
    return json_response({**creds.as_json(), "policy": repo.tenant(name) is not None}, 201)


async def tenant_rotate(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    name = request.path_params["name"]
    try:
        creds = await run_in_threadpool(tenants.rotate_tenant, repo.store, repo.vault, name)
    except tenants.NoSuchTenant:
        raise AcmeProblem("malformed", f"no tenant {name!r}", status=404) from None
    log.info("admin API from %s: tenant %s EAB key rotated", _client(request), name)
    return json_response({**creds.as_json(), "policy": repo.tenant(name) is not None})


async def tenant_delete(request: Request) -> Response:
    if (refused := await run_in_threadpool(refusal, request)) is not None:
        return refused
    repo = repo_of(request)
    name = request.path_params["name"]
    force = force_of(request)
    try:
        n = await run_in_threadpool(
            functools.partial(tenants.delete_tenant, repo.store, name, force=force))
    except tenants.NoSuchTenant:
        raise AcmeProblem("malformed", f"no tenant {name!r}", status=404) from None
    except tenants.TenantHasAccounts as exc:
        raise AcmeProblem(TENANT_HAS_ACCOUNTS, f"tenant {name!r} has {exc.args[1]} "
                          "account(s) bound; ?force=true deactivates them",
                          status=409) from None
    log.info("admin API from %s: tenant %s deleted, %d account(s) deactivated",
             _client(request), name, n)
    return json_response({"tenant": name, "accountsDeactivated": n})


_api = [
    Route("/admin/v1/certificates/{name}/rotate", rotate, methods=["POST"]),
    Route("/admin/v1/inventory", inventory_doc, methods=["GET"]),
    Route("/admin/v1/tenants", tenant_list, methods=["GET"]),
    Route("/admin/v1/tenants", tenant_create, methods=["POST"]),
    Route("/admin/v1/tenants/{name}/rotate", tenant_rotate, methods=["POST"]),
    Route("/admin/v1/tenants/{name}", tenant_delete, methods=["DELETE"]),
]


async def other_method(request: Request) -> Response:
    """Any other request under /admin/: 404 while the admin API is off (a 405 would tell
    that it exists), else 405 for a known path and 404 for the rest."""
    if repo_of(request).config.admin is not None and any(
            r.path_regex.fullmatch(request.scope["path"]) for r in _api):
        raise AcmeProblem("malformed", "method not allowed", status=405)
    raise AcmeProblem("malformed", "no such resource", status=404)


routes = [*_api, Route("/admin/{rest:path}", other_method,
                       methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]
