"""Request verification and response helpers shared by every route.

All ACME POSTs go through :func:`verify_post`; all answers carry a fresh ``Replay-Nonce``
and ``Link: <directory>;rel="index"`` (added by :func:`acme_headers`), and every error is
turned into a problem document in :func:`problem_response` — the one place that does so.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from certdepot.acme import fields, jws
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import tenants
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.http")

JOSE_JSON = "application/jose+json"


@dataclass(frozen=True)
class Signed:
    """A verified ACME request."""

    protected: dict[str, Any]
    payload: dict[str, Any] | None  # None: POST-as-GET
    raw_payload: bytes
    jwk: dict[str, Any]  # the key that signed it
    account: dict[str, Any] | None  # the account row when signed with kid


def repo_of(request: Request) -> Repo:
    r: Repo = request.app.state.repo
    return r


def acme_headers(repo: Repo, headers: dict[str, str] | None = None) -> dict[str, str]:
    out = {
        "Replay-Nonce": repo.new_nonce(),
        "Link": f'<{repo.urls.directory()}>;rel="index"',
        "Cache-Control": "no-store",
    }
    if headers:
        out.update(headers)
    return out


def acme_json(repo: Repo, obj: Any, status: int = 200, *, location: str | None = None,
              headers: dict[str, str] | None = None,
              links: list[tuple[str, str]] | None = None) -> Response:
    hdrs = acme_headers(repo, headers)
    if location:
        hdrs["Location"] = location
    body = json.dumps(obj, separators=(",", ":"))
    resp = Response(body, status_code=status, media_type="application/json", headers=hdrs)
    for url, rel in links or []:
        resp.headers.append("Link", f'<{url}>;rel="{rel}"')
    return resp


#: How long a client should wait when the store is away (a database restart or failover
#: takes seconds; asking sooner only adds load to a database that is coming back).
STORE_RETRY_AFTER_S = 3

# SQLite reports syntax errors and missing tables as OperationalError too: only these
# result codes mean "busy or unreachable", the rest are bugs and stay 500.
_SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN")


def _transient_db_error(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    name = getattr(exc.orig, "sqlite_errorname", None)
    return name is None or str(name).startswith(_SQLITE_TRANSIENT)


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the store is unreachable or restarting,
    as opposed to a bug: the client should retry later rather than give up."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if _transient_db_error(cur):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def store_unavailable_problem() -> AcmeProblem:
    # No exception text: it names hosts, users and SQL.
    return AcmeProblem("serverInternal", "the certificate store is temporarily unavailable",
                       status=503)


def problem_response(repo: Repo, problem: AcmeProblem,
                     headers: dict[str, str] | None = None) -> Response:
    try:
        hdrs = acme_headers(repo, headers)
    except sa.exc.SQLAlchemyError as exc:
        # No fresh nonce can be minted: answer without Replay-Nonce (RFC 8555 §6.5 makes
        # it a SHOULD on errors) rather than fail to answer at all. If the store is away,
        # no request can succeed now whatever the original problem was: say that.
        if store_unavailable(exc):
            problem = store_unavailable_problem()
        else:
            log.error("no nonce for an error response: %s", type(exc).__name__)
        hdrs = {"Link": f'<{repo.urls.directory()}>;rel="index"', "Cache-Control": "no-store",
                **(headers or {})}
    status = problem.status or 400
    retry = problem.extra.get(fields.PROBLEM_RETRY_AFTER)
    if isinstance(retry, int):
        hdrs["Retry-After"] = str(retry)  # e.g. a download whose certificate is on its way
    elif problem.short_type == "rateLimited":
        hdrs["Retry-After"] = "60"
    elif status == 503 and "Retry-After" not in hdrs:
        hdrs["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return Response(json.dumps(problem.to_json()), status_code=status,
                    media_type="application/problem+json", headers=hdrs)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AcmeProblem("malformed", f"request body larger than {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AcmeProblem("malformed", f"request body larger than {limit} bytes",
                              status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def account_id_from_kid(repo: Repo, kid: str) -> str | None:
    prefix = repo.urls.account("")
    if not kid.startswith(prefix):
        return None
    acct = kid[len(prefix):]
    return acct if acct and "/" not in acct else None


Handler = Callable[[Request], Awaitable[Response]]


def threaded(fn: Callable[[Request], Response]) -> Handler:
    """An endpoint whose (blocking, store-bound) work runs in a worker thread, so one slow
    database round trip never stalls the event loop for everyone else."""

    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        repo_of(request).loop = asyncio.get_running_loop()
        return await run_in_threadpool(fn, request)

    return endpoint


def acme_post(*, use_jwk: bool | None = False, allow_deactivated: bool = False,
              waits: Callable[[Repo, Signed], bool] | None = None
              ) -> Callable[[Callable[[Request, Signed], Response]], Handler]:
    """An ACME POST endpoint: the request is verified (``verify_post``), then the
    handler runs with the verified request, both in one store unit.

    Where: a worker thread, unless the store runs requests inline (SQLite: see
    ``Store.runs_inline``), in which case on the event loop itself. A handler that may
    wait for work on the event loop (``Repo.start_and_wait``: issuance by an upstream CA
    at finalize) says so with ``waits(repo, signed)``; such a request is verified inline
    and handled in a worker thread, in a second unit."""

    def wrap(fn: Callable[[Request, Signed], Response]) -> Handler:
        def verified(request: Request, body: bytes, url: str) -> Response:
            repo = repo_of(request)
            # One worker-thread hop and one store transaction for the whole request.
            with repo.store.unit():
                signed = _verify(repo, body, url, use_jwk, allow_deactivated)
                return fn(request, signed)

        def handled(request: Request, signed: Signed) -> Response:
            with repo_of(request).store.unit():
                return fn(request, signed)

        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            repo = repo_of(request)
            repo.loop = asyncio.get_running_loop()
            body, url = await _read_post(request)
            if not repo.store.runs_inline:
                return await run_in_threadpool(verified, request, body, url)
            with repo.store.unit():
                signed = _verify(repo, body, url, use_jwk, allow_deactivated)
                if waits is None or not waits(repo, signed):
                    return fn(request, signed)
            return await run_in_threadpool(handled, request, signed)

        return endpoint

    return wrap


async def verify_post(request: Request, *, use_jwk: bool | None = False,
                      allow_deactivated: bool = False) -> Signed:
    """RFC 8555 §6.2-6.5 for one request: content type, JWS structure and algorithm,
    ``url`` equal to the external request URL, ``kid`` xor ``jwk`` as the resource demands
    (``use_jwk=None``: either), account status, signature, then the single-use nonce (after
    the signature so that forged requests cannot burn a legitimate client's nonces)."""
    repo = repo_of(request)
    body, url = await _read_post(request)
    return await run_in_threadpool(_verify, repo, body, url, use_jwk, allow_deactivated)


async def _read_post(request: Request) -> tuple[bytes, str]:
    """The checks that need no store: content type and body size; the body and the
    external request URL the JWS must name."""
    repo = repo_of(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JOSE_JSON:
        raise AcmeProblem("malformed", f"Content-Type must be {JOSE_JSON}", status=415)
    body = await read_body(request, repo.config.max_body_bytes)
    return body, repo.urls.request_url(request.url.path, request.url.query)


def _verify(repo: Repo, body: bytes, url: str, use_jwk: bool | None,
            allow_deactivated: bool) -> Signed:
    parsed = jws.parse_jws(body)
    if use_jwk is None:
        use_jwk = parsed.jwk is not None
    parsed.check_url(url)
    account: dict[str, Any] | None = None
    if use_jwk:
        if parsed.jwk is None:
            raise AcmeProblem("malformed", "this resource must be signed with a jwk, not kid")
        key = public_key_of(parsed.jwk)
        # What is kept of a client's key: its RFC 7638 members, nothing else it sent.
        signer_jwk = jws.canonical_jwk(parsed.jwk)
    else:
        if parsed.kid is None:
            raise AcmeProblem("malformed", "this resource must be signed with kid")
        acct_id = account_id_from_kid(repo, parsed.kid)
        account = repo.store.account(acct_id) if acct_id else None
        if account is None:
            raise AcmeProblem("accountDoesNotExist", "no such account")
        signer_jwk = dict(account["jwk"])
        key = public_key_of(signer_jwk)
    parsed.verify(key)
    if account is not None and account["status"] != "valid" and not allow_deactivated:
        raise AcmeProblem("unauthorized", tenants.inactive_detail(repo.store, account))
    if not parsed.nonce or not repo.store.use_nonce(parsed.nonce):
        raise AcmeProblem("badNonce", "nonce unknown, expired or already used")
    return Signed(parsed.protected, parsed.payload_json(), parsed.payload, signer_jwk, account)


def public_key_of(jwk_doc: dict[str, Any]) -> jws.PublicKey:
    return jws.public_key_from_jwk(jwk_doc)
