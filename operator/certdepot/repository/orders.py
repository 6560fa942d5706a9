"""Orders and authorizations: creation by policy, state transitions, finalization.

Three kinds of order share the RFC 8555 state machine:
- plain: names the tenant may have issued (policy name patterns), finalized with a CSR;
- download (certdepot extension): the name set of a managed certificate, finalized with an
  ephemeral public JWK; the order then links the existing certificate and its wrapped key;
- delegation (RFC 9115): starts ``ready`` with no authorizations; the CSR is checked
  against the delegation's template at finalize (see delegation.py).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from certdepot.acme import fields, keywrap
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import (
    certstore,
    csrpolicy,
    delegation,
    grants,
    policy,
    tenants,
    validity,
)
from certdepot.repository import store as tables
from certdepot.repository.config import Tenant
from certdepot.repository.issuance import (
    ORDER_LIFETIME,
    issue_for_order,
    order_error,
    parse_identifiers,
)
from certdepot.repository.issuers import IssueRequest
from certdepot.repository.quotas import check_new_order, check_replaces
from certdepot.repository.state import Repo
from certdepot.repository.store import new_id

log = logging.getLogger("certdepot.repository.orders")

AUTHZ_LIFETIME = 7 * 86400.0
PROCESSING_LIMIT = 900.0


def _new_authz(repo: Repo, order_id: str, account_id: str, name: str, *, valid: bool,
               challenge_types: list[str]) -> dict[str, Any]:
    """An authorization row (the order's are inserted together: ``_insert_order``)."""
    challenges = [] if valid else [
        {"id": new_id(), "type": t, "token": secrets.token_urlsafe(32), "status": "pending"}
        for t in challenge_types]
    return {"id": new_id(), "order_id": order_id, "account_id": account_id,
            "status": "valid" if valid else "pending",
            "identifier": {"type": "dns", "value": name.removeprefix("*.")},
            "expires": repo.clock() + AUTHZ_LIFETIME, "wildcard": name.startswith("*."),
            "challenges": challenges}


def create_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]
                 ) -> dict[str, Any]:
    check_new_order(repo, account, payload)
    # None for an account without a policy: it may still download a downloadByProof
    # certificate; everything else tells it why it has no policy (tenants.standing).
    tenant, _ = tenants.standing(repo, account)
    profile = _requested_profile(repo, payload)
    if payload.get(fields.DELEGATION) is not None:
        tenants.require_policy(repo, account)
        return delegation.create_order(repo, account, payload)
    idents = parse_identifiers(payload)
    names = [i["value"] for i in idents]
    data: dict[str, Any] = {"identifiers": idents}
    if profile is not None:
        data["profile"] = profile
    if payload.get("replaces") is not None:
        check_replaces(repo, account, payload["replaces"], names)
        data["replaces"] = str(payload["replaces"])
    validity.parse_request(payload, delegated=False)  # plain orders take no dates
    order_id = new_id()
    if payload.get(fields.DOWNLOAD) is not None:
        granted = _download_grants(repo, account, tenant, payload, idents, data)
    else:
        granted = _issue_grants(repo, account, idents, data)
    return _insert_order(repo, account, order_id, data, names, granted)


def _download_grants(repo: Repo, account: dict[str, Any], tenant: Tenant | None,
                     payload: dict[str, Any], idents: list[dict[str, Any]],
                     data: dict[str, Any]) -> list[bool]:
    """A download order: its names must be a held certificate's name set, which the tenant
    may download (its authorizations then start valid) or prove (downloadByProof).
    Records the certificate in ``data``; one grant per name."""
    if payload[fields.DOWNLOAD] is not True:
        raise AcmeProblem("malformed", "download must be true when present")
    names = [i["value"] for i in idents]
    managed = policy.managed_for_names(repo.config, names)
    if managed is None:
        raise AcmeProblem(
            "rejectedIdentifier",
            "the identifiers do not equal the DNS names of any certificate held here",
            subproblems=[AcmeProblem("rejectedIdentifier", "not part of a held "
                                     "certificate's name set", identifier=i)
                         for i in idents if not any(
                             i["value"] in c.dns_names for c in repo.config.certificates)])
    granted = policy.may_download(tenant, managed)
    if not granted and not managed.download_by_proof:
        if tenant is None:
            tenants.require_policy(repo, account)
        raise AcmeProblem("unauthorized",
                          "this account may not download that certificate")
    if data.get("profile", managed.profile) != managed.profile:
        raise AcmeProblem("invalidProfile", f"certificate {managed.name!r} is issued "
                          f"with profile {managed.profile!r}, not {data['profile']!r}")
    data.update(download=True, managed=managed.name)
    return [granted] * len(names)


def _issue_grants(repo: Repo, account: dict[str, Any], idents: list[dict[str, Any]],
                  data: dict[str, Any]) -> list[bool]:
    """A plain order: the tenant's policy must allow every name and name an issuer that can
    issue with the requested profile. Records the issuer in ``data``; the policy grants
    every name (their authorizations start valid)."""
    tenant = tenants.require_policy(repo, account)
    refused = [i for i in idents if not policy.may_issue(tenant, i["value"])]
    if refused:
        raise AcmeProblem(
            "rejectedIdentifier", "the tenant's policy does not allow these names",
            subproblems=[AcmeProblem("rejectedIdentifier",
                                     "not allowed for this tenant", identifier=i)
                         for i in refused])
    issuer = tenant.issuer or repo.config.default_issuer
    if issuer is None or not repo.issuers[issuer].can_issue:
        raise AcmeProblem("serverInternal", "no issuer is configured for this tenant")
    why = policy.profile_problem(repo.config, data.get("profile"), issuer)
    if why:
        raise AcmeProblem("invalidProfile", why)
    data["issuer"] = issuer
    return [True] * len(idents)


def _insert_order(repo: Repo, account: dict[str, Any], order_id: str, data: dict[str, Any],
                  names: list[str], granted: list[bool]) -> dict[str, Any]:
    """Store the order and one authorization per name: valid where granted, else pending
    with its challenges (no http-01 for a wildcard). Ready when every name is granted."""
    challenge_types = ["http-01", "dns-01"]
    authzs = [
        _new_authz(repo, order_id, account["id"], n, valid=g,
                   challenge_types=[t for t in challenge_types
                                    if not (n.startswith("*.") and t == "http-01")])
        for n, g in zip(names, granted, strict=True)]
    repo.store.insert_many(tables.authzs, authzs)  # one statement for all of them
    data["authzs"] = [a["id"] for a in authzs]
    status = "ready" if all(granted) else "pending"
    row = {"id": order_id, "account_id": account["id"], "status": status,
           "expires": repo.clock() + ORDER_LIFETIME, "data": data, "cert_id": None,
           "created": repo.clock()}
    repo.store.insert(tables.orders, **row)
    return row


def _requested_profile(repo: Repo, payload: dict[str, Any]) -> str | None:
    """The newOrder ``profile``, if any, once the directory offers it. Checked again against
    the issuer once that is known: a profile is honoured or refused (invalidProfile), never
    silently replaced by the default."""
    profile = payload.get("profile")
    if profile is None:
        return None
    if not isinstance(profile, str):
        raise AcmeProblem("malformed", "profile must be a string")
    why = policy.profile_problem(repo.config, profile, None)
    if why:
        raise AcmeProblem("invalidProfile", why)
    return profile


def get_order_for(repo: Repo, order_id: str, account: dict[str, Any]) -> dict[str, Any]:
    row = repo.store.get(tables.orders, order_id)
    if row is None or row["account_id"] != account["id"]:
        # Same answer for "absent" and "someone else's": order URLs are not an oracle.
        raise AcmeProblem("malformed", "no such order", status=404)
    return refresh_order(repo, row)


def refresh_order(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    """Recompute pending -> ready/invalid from the authorizations, and expiry."""
    if row["status"] in ("pending", "ready", "processing") and row["expires"] < repo.clock():
        repo.store.update(tables.orders, row["id"], status="invalid")
        return {**row, "status": "invalid"}
    started = row["data"].get("processing_started")
    if row["status"] == "processing" and started and started + PROCESSING_LIMIT < repo.clock():
        # The replica that claimed it died (or the upstream hangs): fail visibly.
        order_error(repo, row, AcmeProblem("serverInternal", "issuance did not finish"))
        return repo.store.get(tables.orders, row["id"]) or row
    if row["status"] != "pending":
        return row
    statuses = [a["status"] for a in repo.store.find(tables.authzs, order_id=row["id"])]
    new = row["status"]
    if any(s in ("invalid", "deactivated", "expired", "revoked") for s in statuses):
        new = "invalid"
    elif statuses and all(s == "valid" for s in statuses):
        new = "ready"
    if new != row["status"] and repo.store.update(tables.orders, row["id"],
                                                  where={"status": "pending"}, status=new):
        return {**row, "status": new}
    return repo.store.get(tables.orders, row["id"]) or row


def finalize(repo: Repo, account: dict[str, Any], order_id: str,
             payload: dict[str, Any]) -> dict[str, Any]:
    """Runs in the request's store unit (see ``http.acme_post`` for which thread)."""
    row = get_order_for(repo, order_id, account)
    if row["status"] != "ready":
        raise AcmeProblem("orderNotReady", f"order is {row['status']}, not ready")
    data = row["data"]
    if data.get("star_cancelled"):
        # RFC 8739 §3.1.2: a canceled order issues nothing more (RFC 8555 §7.4: not ready).
        raise AcmeProblem("orderNotReady", "order is canceled, not ready")
    grants.require(repo, row, account, "finalize")  # the grant may be gone since newOrder
    if data.get("download"):
        return _finalize_download(repo, row, payload)
    if data.get("delegation"):
        return delegation.finalize(repo, account, row, payload)
    csr, csr_der = csrpolicy.finalize_csr(payload)
    csrpolicy.check(csr)
    wanted = csrpolicy.check_order_names(csr, data["identifiers"])
    claimed = {**data, "processing_started": repo.clock()}
    request = IssueRequest(csr_der=csr_der, dns_names=wanted,
                           profile=data.get("profile"), replaces=data.get("replaces"))
    # The local CA signs before we answer; slow issuers leave the order processing and
    # the client polls (Retry-After).
    return issue_for_order(repo, row, claimed, request, account["id"])


def check_ephemeral_jwk(jwk: Any) -> dict[str, str]:
    """The ephemeral key of a download finalize: a public ECDH key, nothing else."""
    return keywrap.validate_ephemeral_jwk(jwk)


def _finalize_download(repo: Repo, row: dict[str, Any], payload: dict[str, Any]
                       ) -> dict[str, Any]:
    if "csr" in payload:
        raise AcmeProblem("malformed", "a download order is finalized with ephemeral-jwk, "
                          "not a csr")
    jwk = check_ephemeral_jwk(payload.get(fields.EPHEMERAL_JWK))
    cert = certstore.current_managed(repo.store, row["data"]["managed"])
    if cert is None or cert["key"] is None:
        raise AcmeProblem("orderNotReady", "the certificate has not been obtained yet; retry",
                          extra={fields.PROBLEM_RETRY_AFTER: 10})
    if cert["revoked"]:  # revoked through ACME; its replacement is being issued
        raise AcmeProblem("orderNotReady", "the certificate was revoked and is being "
                          "replaced; retry", extra={fields.PROBLEM_RETRY_AFTER: 5})
    data = {**row["data"], "ephemeral_jwk": jwk}
    if not repo.store.update(tables.orders, row["id"], where={"status": "ready"},
                             status="valid", cert_id=cert["id"], data=data):
        raise AcmeProblem("orderNotReady", "order is already finalized")
    # The row as just written (compare-and-set on "ready": nobody else changed it since).
    return {**row, "status": "valid", "cert_id": cert["id"], "data": data}
