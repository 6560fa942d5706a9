"""Is the grant an order was made under still in force? Asked wherever a key or a
certificate leaves the repository, not only when the order is created.

A grant is what policy.py says a tenant may have: a download grant (or, for a
``downloadByProof`` certificate, a proof of control still valid), the ``issue`` name
patterns, or membership in a delegation whose name patterns cover the order's names. The
configuration can change between newOrder and the moment a key leaves (the admin removes a
grant and restarts; a delegation is cancelled), so :func:`require` is called at

- finalize (every kind of order),
- every private-key fetch of a download order,
- every certificate fetch (``/acme/cert/...``) and STAR certificate fetch,
- every STAR renewal (the renewal loop stops an order whose grant is gone).

A refusal is ``unauthorized`` (403), counted in
``certdepot_repository_policy_refusals_total{step,reason}`` and logged with the order,
tenant, account and reason, never with key material.
"""

from __future__ import annotations

import logging
from typing import Any

from certdepot.acme.problems import AcmeProblem
from certdepot.repository import policy, tenants
from certdepot.repository import store as tables
from certdepot.repository.config import Tenant
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.grants")

# Reason codes: a fixed set, so the metric's label values stay bounded.
ACCOUNT = "account-not-valid"
DOWNLOAD = "download-grant-withdrawn"
CERTIFICATE = "certificate-not-held"
ISSUE = "names-not-granted"
DELEGATION = "delegation-withdrawn"

_DETAIL = {
    ACCOUNT: "the account is no longer valid",
    DOWNLOAD: "the tenant's grant to download this certificate was withdrawn",
    CERTIFICATE: "the certificate is no longer held here under these names",
    ISSUE: "the tenant's policy no longer allows these names",
    DELEGATION: "the delegation was withdrawn or no longer covers these names",
}


def _names(row: dict[str, Any]) -> list[str]:
    return [str(i["value"]) for i in row["data"]["identifiers"]]


def _proved(repo: Repo, row: dict[str, Any]) -> bool:
    """Every name of the order was proven by a challenge whose authorization is still
    valid (pre-validated authorizations of a grant carry no challenge and do not count)."""
    authzs = repo.store.find(tables.authzs, order_id=row["id"])
    now = repo.clock()
    return bool(authzs) and all(
        a["status"] == "valid" and a["expires"] >= now and any(
            c.get("status") == "valid" for c in a["challenges"]) for a in authzs)


def _download(repo: Repo, row: dict[str, Any], tenant: Tenant | None,
              why: str | None) -> str | None:
    managed = repo.config.certificate(row["data"].get("managed", ""))
    if managed is None or set(managed.dns_names) != set(_names(row)):
        return CERTIFICATE
    if policy.may_download(tenant, managed):
        return None
    if managed.download_by_proof and _proved(repo, row):
        return None
    # No policy at all is not a withdrawn grant: say which (tenants.standing).
    return why or DOWNLOAD


def _delegated(repo: Repo, row: dict[str, Any], account: dict[str, Any]) -> str | None:
    # delegation.py builds on orders.py, which calls this module: import late.
    from certdepot.repository import delegation

    data = row["data"]
    if data.get("tenant") != account.get("tenant"):
        return DELEGATION
    d = next((x for x in delegation.delegations_for(repo, account)
              if x.name == data.get("delegation")), None)
    if d is None or not all(delegation.name_allowed(d, n) for n in _names(row)):
        return DELEGATION
    return None


def refused(repo: Repo, row: dict[str, Any], account: dict[str, Any] | None) -> str | None:
    """Why the grant of order ``row`` no longer holds for ``account``, or None."""
    if account is None or account["status"] != "valid":
        return ACCOUNT
    data = row["data"]
    tenant, why = tenants.standing(repo, account)
    if data.get("download"):
        return _download(repo, row, tenant, why)
    if tenant is None:
        return why
    if data.get("delegation"):
        return _delegated(repo, row, account)
    if not all(policy.may_issue(tenant, n) for n in _names(row)):
        return ISSUE
    return None


def refuse(repo: Repo, row: dict[str, Any], account: dict[str, Any] | None, step: str,
           reason: str) -> AcmeProblem:
    """Count and log a refusal; returns the problem to raise."""
    repo.count_refusal(step, reason)
    log.warning("policy refused %s of order %s (tenant %s, account %s): %s", step, row["id"],
                (account or {}).get("tenant"), row["account_id"], reason)
    detail = _DETAIL.get(reason) or tenants.refusal_detail(reason, (account or {}).get("tenant"))
    return AcmeProblem("unauthorized", detail)


def require(repo: Repo, row: dict[str, Any], account: dict[str, Any] | None,
            step: str) -> None:
    """Raise ``unauthorized`` unless order ``row``'s grant still holds for ``account``."""
    reason = refused(repo, row, account)
    if reason is not None:
        raise refuse(repo, row, account, step, reason)


def owner(repo: Repo, row: dict[str, Any]) -> dict[str, Any] | None:
    """The account that placed order ``row`` (for steps no account signs: STAR GET and
    the renewal loop)."""
    return repo.store.get(tables.accounts, row["account_id"])


def require_certificate(repo: Repo, cert: dict[str, Any], account: dict[str, Any], *,
                        issued: dict[str, Any] | None = None) -> None:
    """Certificate fetch: the certificate is served through one of ``account``'s orders
    (the one that issued it, or a download order linking it) whose grant still holds;
    a certificate no order of the account links is unknown to it (404). ``issued``: the
    order that issued it, when the caller read it already in this request."""
    rows: list[dict[str, Any]] = []
    if cert["order_id"]:
        if issued is None or issued["id"] != cert["order_id"]:
            issued = repo.store.get(tables.orders, cert["order_id"])
        if issued is not None and issued["account_id"] == account["id"]:
            rows.append(issued)
    if not rows:  # a managed certificate: linked by the account's download orders
        rows = repo.store.find(tables.orders, account_id=account["id"], cert_id=cert["id"],
                               status="valid")
    first: str | None = None
    for row in rows:  # the first order whose grant holds is enough
        reason = refused(repo, row, account)
        if reason is None:
            return
        first = first or reason
    if first is None:
        raise AcmeProblem("malformed", "no such certificate", status=404)
    raise refuse(repo, rows[0], account, "certificate", first)
