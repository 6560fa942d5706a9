"""RFC 9115 delegation: objects per tenant, orders that start ready, CSR checks at finalize,
and RFC 8739 auto-renewal orders (renewed in star.py).

The repository is the IdO: the tenant's account is the NDC. A delegation is named in the
configuration; its URL is ``/acme/acct/<account>/delegation/<name>``, so a delegation URL of
another account is simply unknown to this one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certdepot.acme import csr_template, dnsname, fields
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import csrpolicy, issuance, policy, validity
from certdepot.repository import store as tables
from certdepot.repository.config import Delegation
from certdepot.repository.issuers import IssueRequest
from certdepot.repository.state import Repo
from certdepot.repository.store import Store, new_id


def _cancel_key(tenant: str) -> str:
    return f"delegation-cancelled:{tenant}"


def cancelled_names(store: Store, tenant: str) -> set[str]:
    return {n for n in (store.get_blob(_cancel_key(tenant)) or b"").decode().split("\n") if n}


def delegations_for(repo: Repo, account: dict[str, Any]) -> list[Delegation]:
    tenant = repo.tenant(account.get("tenant"))
    if tenant is None:
        return []
    cancelled = cancelled_names(repo.store, tenant.name)
    return [d for d in tenant.delegations if d.name not in cancelled]


def find(repo: Repo, account: dict[str, Any], url: Any) -> Delegation:
    if not isinstance(url, str):
        raise AcmeProblem("malformed", "delegation must be a URL")
    for d in delegations_for(repo, account):
        if repo.urls.delegation(account["id"], d.name) == url:
            return d
    raise AcmeProblem("unknownDelegation", "no such delegation for this account")


def cancel(store: Store, tenant: str, name: str) -> int:
    """Mark a delegation cancelled; returns how many auto-renewal orders it stops."""
    names = cancelled_names(store, tenant) | {name}
    store.put_blob(_cancel_key(tenant), "\n".join(sorted(names)).encode())
    stopped = 0
    for row in store.select(tables.orders):
        data = row["data"]
        if data.get("delegation") == name and data.get("tenant") == tenant and \
                data.get("auto_renewal") and not data.get("star_cancelled"):
            store.update(tables.orders, row["id"], data={**data, "star_cancelled": True})
            stopped += 1
    return stopped


def _template_names(d: Delegation) -> list[str]:
    san = (d.csr_template.get("extensions") or {}).get("subjectAltName") or {}
    names = san.get("DNS") or san.get("dNSName") or []
    out = []
    for n in names:
        if isinstance(n, str) and n not in ("*", "**"):
            try:
                out.append(dnsname.normalize(n))
            except dnsname.InvalidName:
                continue  # config validation reports it; it grants nothing
    return out


def name_allowed(d: Delegation, name: str) -> bool:
    return name in _template_names(d) or any(policy.name_matches(name, p)
                                             for p in d.name_patterns)


def _refuse_names(d: Delegation, names: list[str]) -> None:
    bad = [n for n in names if not name_allowed(d, n)]
    if bad:
        raise AcmeProblem(
            "rejectedIdentifier", f"names outside delegation {d.name!r}: {', '.join(bad)}",
            subproblems=[AcmeProblem("rejectedIdentifier", "not allowed by the delegation",
                                     identifier={"type": "dns", "value": n}) for n in bad])


def _validity(repo: Repo, d: Delegation, payload: dict[str, Any]
              ) -> tuple[validity.Requested, validity.Window, dict[str, Any]]:
    """The order's requested validity, checked now against every limit (validity.py), and
    its auto-renewal settings as stored and shown ({} for a one-off order)."""
    req = validity.parse_request(payload, delegated=True)
    lim = validity.limits(repo, d.issuer, d)
    now = repo.clock()
    if not req.star:
        return req, validity.window(req, lim, now), {}
    validity.check_star_request(
        req, lim, now, min_lifetime=repo.config.star_min_lifetime.total_seconds(),
        max_duration=repo.config.star_max_duration.total_seconds())
    ar = payload[fields.AUTO_RENEWAL]
    get = ar.get(fields.ALLOW_CERTIFICATE_GET, False)
    if not isinstance(get, bool):
        raise AcmeProblem("malformed", "allow-certificate-get must be a boolean")
    if get and not d.allow_certificate_get:
        raise AcmeProblem("malformed", "this delegation does not allow certificate GET")
    settings: dict[str, Any] = {fields.END_DATE: req.end_date, fields.LIFETIME: req.lifetime,
                                fields.ALLOW_CERTIFICATE_GET: get}
    if req.start_date:
        settings[fields.START_DATE] = req.start_date
    if req.predate:
        settings[fields.LIFETIME_ADJUST] = req.predate
    return req, validity.window(req, lim, now), settings


def requested(data: dict[str, Any]) -> validity.Requested:
    """The validity a stored delegated order asked for (to compute each issuance's
    window again with the limits then in force)."""
    ar = data.get("auto_renewal")
    if ar:
        return validity.Requested(lifetime=int(ar[fields.LIFETIME]),
                                  predate=int(ar.get(fields.LIFETIME_ADJUST, 0)),
                                  end_date=ar[fields.END_DATE],
                                  start_date=ar.get(fields.START_DATE))
    return validity.Requested(not_before=data.get("notBefore"),
                              not_after=data.get("notAfter"))


def create_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]
                 ) -> dict[str, Any]:
    d = find(repo, account, payload.get(fields.DELEGATION))
    names = [i["value"] for i in issuance.parse_identifiers(payload)]
    _refuse_names(d, names)
    req, first, auto_renewal = _validity(repo, d, payload)
    order_id = new_id()
    data: dict[str, Any] = {
        "identifiers": [{"type": "dns", "value": n} for n in names], "authzs": [],
        "delegation": d.name, "delegation_url": payload[fields.DELEGATION],
        "tenant": account.get("tenant"), "issuer": d.issuer, "lifetime": first.lifetime,
    }
    if d.profile:
        data["profile"] = d.profile
    if auto_renewal:
        data["auto_renewal"] = auto_renewal
    if req.not_before:
        data["notBefore"] = req.not_before
    if req.not_after:
        data["notAfter"] = req.not_after
    row = {"id": order_id, "account_id": account["id"], "status": "ready",
           "expires": repo.clock() + issuance.ORDER_LIFETIME, "data": data,
           "cert_id": None, "created": repo.clock()}
    repo.store.insert(tables.orders, **row)
    return row


def issue_window(repo: Repo, d: Delegation, data: dict[str, Any]) -> validity.Window:
    """The window of the order's next certificate, with the limits in force now."""
    return validity.window(requested(data), validity.limits(repo, d.issuer, d), repo.clock())


def active(repo: Repo, account: dict[str, Any], name: str) -> Delegation:
    d = next((x for x in delegations_for(repo, account) if x.name == name), None)
    if d is None:
        raise AcmeProblem("unknownDelegation", "the delegation was withdrawn")
    return d


def finalize(repo: Repo, account: dict[str, Any], row: dict[str, Any],
             payload: dict[str, Any]) -> dict[str, Any]:
    data = row["data"]
    d = active(repo, account, data["delegation"])
    csr, csr_der = csrpolicy.finalize_csr(payload)
    csr_template.check_csr(d.csr_template, csr)
    csrpolicy.check(csr)  # a permissive template still cannot buy a CA certificate
    _refuse_names(d, csrpolicy.csr_names(csr))
    wanted = csrpolicy.check_order_names(csr, data["identifiers"])
    win = issue_window(repo, d, data)
    new_data = {**data, "processing_started": repo.clock()}
    if data.get("auto_renewal"):
        new_data["csr"] = payload["csr"]  # STAR re-issues from it
    not_before, not_after = win.datetimes()
    request = IssueRequest(csr_der=csr_der, dns_names=wanted,
                           lifetime=dt.timedelta(seconds=round(win.lifetime)),
                           profile=data.get("profile"),
                           not_before=not_before, not_after=not_after)
    return issuance.issue_for_order(repo, row, new_data, request, account["id"])
