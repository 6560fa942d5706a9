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
import hmac
import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    if (expected is not None and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), expected.encode())):
        return None
    log.warning("admin API: %s %s refused (no valid bearer token)", request.method,
                request.url.path)
    return problem_response(
        repo, AcmeProblem("unauthorized", "admin API: a valid bearer token is required",
                          status=401), headers={"WWW-Authenticate": 'Bearer realm="certdepot"'})


def json_response(doc: object, status: int = 200) -> Response:
    return Response(json.dumps(doc, indent=1), status_code=status,
                    media_type="application/json", headers={"Cache-Control": "no-store"})


async def read_json_object(request: Request) -> dict[str, object]:
    """The request's body: a small JSON object (empty body: ``{}``)."""
    body = await read_body(request, MAX_ADMIN_BODY)
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise AcmeProblem("malformed", "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise AcmeProblem("malformed", "the body must be a JSON object")
    return doc


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
    force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
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


routes = [
    Route("/admin/v1/certificates/{name}/rotate", rotate, methods=["POST"]),
    Route("/admin/v1/inventory", inventory_doc, methods=["GET"]),
    Route("/admin/v1/tenants", tenant_list, methods=["GET"]),
    Route("/admin/v1/tenants", tenant_create, methods=["POST"]),
    Route("/admin/v1/tenants/{name}/rotate", tenant_rotate, methods=["POST"]),
    Route("/admin/v1/tenants/{name}", tenant_delete, methods=["DELETE"]),
]
