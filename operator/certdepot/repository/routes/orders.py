"""newOrder, order objects and finalize (RFC 8555 §7.4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme.messages import Status
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import orders as logic
from certdepot.repository import store as tables
from certdepot.repository.http import Signed, acme_json, acme_post, repo_of
from certdepot.repository.issuers import SignsNow
from certdepot.repository.state import Repo
from certdepot.repository.views import order_json


def _retry(status: str) -> dict[str, str]:
    return {"Retry-After": "2"} if status in ("processing", "pending") else {}


@acme_post()
def new_order(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    if signed.payload is None:
        raise AcmeProblem("malformed", "newOrder needs a payload")
    row = logic.create_order(repo, signed.account, signed.payload)
    return acme_json(repo, order_json(repo, row), 201, location=repo.urls.order(row["id"]))


@acme_post()
def order(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    row = logic.get_order_for(repo, request.path_params["order"], signed.account)
    if signed.payload and signed.payload.get("status") == Status.CANCELED:
        # RFC 8739 §3.1.2: the client stops auto-renewal.
        # RFC 8739 §3.1.2 and §3.6: only a valid (issuing) STAR order can be canceled.
        if not row["data"].get("auto_renewal") or row["data"].get("star_cancelled") or \
                row["status"] != "valid":
            raise AcmeProblem("autoRenewalCancellationInvalid",
                              "not a valid, active auto-renewal order")
        data = {**row["data"], "star_cancelled": True}
        repo.store.update(tables.orders, row["id"], data=data)
        row = {**row, "data": data}
    return acme_json(repo, order_json(repo, row), location=repo.urls.order(row["id"]),
                     headers=_retry(row["status"]))


def _issues(repo: Repo, signed: Signed) -> bool:
    # Plain and delegated orders issue from a CSR; a download order (ephemeral-jwk) never
    # waits, nor does a CSR when every issuer signs in place (the local CA: SignsNow).
    # Otherwise the order's issuer may be an upstream CA, which the request waits for on
    # the event loop (start_and_wait). Without a csr no order gets that far.
    return "csr" in (signed.payload or {}) and not all(
        isinstance(i, SignsNow) for i in repo.issuers.values() if i.can_issue)


@acme_post(waits=_issues)
def finalize(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    if signed.payload is None:
        raise AcmeProblem("malformed", "finalize needs a payload")
    row = logic.finalize(repo, signed.account, request.path_params["order"],
                               signed.payload)
    return acme_json(repo, order_json(repo, row), location=repo.urls.order(row["id"]),
                     headers=_retry(row["status"]))


routes = [
    Route("/acme/new-order", new_order, methods=["POST"]),
    Route("/acme/order/{order}", order, methods=["POST"]),
    Route("/acme/order/{order}/finalize", finalize, methods=["POST"]),
]
