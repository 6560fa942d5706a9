"""RFC 9115 delegation: objects per tenant, orders that start ready, CSR checks at finalize,
and RFC 8739 auto-renewal orders (renewed in star.py).

The repository is the IdO: the tenant's account is the NDC. A delegation is named in the
configuration; its URL is ``/acme/acct/<account>/delegation/<name>``, so a delegation URL of
another account is simply unknown to this one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certdepot.acme import csr_template, dnsname
from certdepot.acme.messages import parse_time
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import csrpolicy, policy
from certdepot.repository import orders as order_logic
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


def _seconds(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise AcmeProblem("malformed", f"{what} must be a positive number of seconds")
    return value


def _lifetime(repo: Repo, d: Delegation, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(certificate lifetime in seconds, auto-renewal settings or {})."""
    limit = d.max_lifetime.total_seconds()
    now = repo.clock()
    ar = payload.get("auto-renewal")
    if ar is not None:
        if not isinstance(ar, dict):
            raise AcmeProblem("malformed", "auto-renewal must be an object")
        lifetime = _seconds(ar.get("lifetime"), "auto-renewal lifetime")
        end = parse_time(ar.get("end-date"), "auto-renewal end-date")
        if end is None or end.timestamp() <= now:
            raise AcmeProblem("malformed", "auto-renewal end-date must be in the future")
        if lifetime < repo.config.star_min_lifetime.total_seconds():
            raise AcmeProblem("malformed", f"auto-renewal lifetime below the minimum "
                              f"{int(repo.config.star_min_lifetime.total_seconds())}s")
        if lifetime > limit:
            raise AcmeProblem("malformed", f"auto-renewal lifetime {lifetime}s exceeds the "
                              f"delegation's maximum {int(limit)}s")
        get = bool(ar.get("allow-certificate-get", False))
        if get and not d.allow_certificate_get:
            raise AcmeProblem("malformed", "this delegation does not allow certificate GET")
        settings = {"end-date": ar["end-date"], "lifetime": lifetime,
                    "allow-certificate-get": get}
        if ar.get("start-date"):
            settings["start-date"] = ar["start-date"]
        return float(lifetime), settings
    start = parse_time(payload.get("notBefore"), "notBefore")
    end = parse_time(payload.get("notAfter"), "notAfter")
    if end is None:
        return limit, {}
    begin = start.timestamp() if start else now
    asked = end.timestamp() - begin
    if asked <= 0:
        raise AcmeProblem("malformed", "notAfter must be after notBefore")
    if asked > limit + 1:  # +1: clients round to seconds
        raise AcmeProblem("malformed", f"requested lifetime {int(asked)}s exceeds the "
                          f"delegation's maximum {int(limit)}s")
    return asked, {}


def create_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]
                 ) -> dict[str, Any]:
    d = find(repo, account, payload.get("delegation"))
    names = [i["value"] for i in order_logic.parse_identifiers(payload)]
    _refuse_names(d, names)
    lifetime, auto_renewal = _lifetime(repo, d, payload)
    order_id = new_id()
    data: dict[str, Any] = {
        "identifiers": [{"type": "dns", "value": n} for n in names], "authzs": [],
        "delegation": d.name, "delegation_url": payload["delegation"],
        "tenant": account.get("tenant"), "issuer": d.issuer, "lifetime": lifetime,
    }
    if d.profile:
        data["profile"] = d.profile
    if auto_renewal:
        data["auto_renewal"] = auto_renewal
    for key in ("notBefore", "notAfter"):
        if payload.get(key):
            data[key] = payload[key]
    row = {"id": order_id, "account_id": account["id"], "status": "ready",
           "expires": repo.clock() + order_logic.ORDER_LIFETIME, "data": data,
           "cert_id": None, "created": repo.clock()}
    repo.store.insert(tables.orders, **row)
    return row


def finalize(repo: Repo, account: dict[str, Any], row: dict[str, Any],
             payload: dict[str, Any]) -> dict[str, Any]:
    data = row["data"]
    d = next((x for x in delegations_for(repo, account) if x.name == data["delegation"]), None)
    if d is None:
        raise AcmeProblem("unknownDelegation", "the delegation was withdrawn")
    csr, csr_der = csrpolicy.finalize_csr(payload)
    csr_template.check_csr(d.csr_template, csr)
    csrpolicy.check(csr)  # a permissive template still cannot buy a CA certificate
    _refuse_names(d, csrpolicy.csr_names(csr))
    wanted = csrpolicy.check_order_names(csr, data["identifiers"])
    new_data = {**data, "processing_started": repo.clock()}
    if data.get("auto_renewal"):
        new_data["csr"] = payload["csr"]  # STAR re-issues from it
    if not repo.store.update(tables.orders, row["id"], where={"status": "ready"},
                             status="processing", data=new_data):
        raise AcmeProblem("orderNotReady", "order is already being finalized")
    request = IssueRequest(csr_der=csr_der, dns_names=wanted,
                           lifetime=dt.timedelta(seconds=round(data["lifetime"])),
                           profile=data.get("profile"),
                           not_before=parse_time(data.get("notBefore"), "notBefore"),
                           not_after=parse_time(data.get("notAfter"), "notAfter"))
    repo.start_and_wait(
        order_logic.issue_in_background(repo, row, data["issuer"], request, account["id"]),
        f"issue-{row['id']}", order_logic.FINALIZE_WAIT)
    return repo.store.get(tables.orders, row["id"]) or row
