"""What every kind of order shares: identifiers, lifetimes, and issuing in the background.

orders.py (plain and download orders) and delegation.py (RFC 9115 orders) both build on
this module; neither imports the other's internals, so the import graph has no cycle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from certdepot.acme import dnsname
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import certstore
from certdepot.repository import store as tables
from certdepot.repository.issuers import IssueRequest, IssuerError, SignsNow
from certdepot.repository.state import Repo
from certdepot.repository.store import new_id

log = logging.getLogger("certdepot.repository.orders")

ORDER_LIFETIME = 7 * 86400.0
FINALIZE_WAIT = 3.0


def parse_identifiers(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The order's identifiers in canonical form (dnsname.normalize), repeats dropped;
    ``rejectedIdentifier`` with one subproblem per name that is not a DNS name."""
    idents = payload.get("identifiers")
    if not isinstance(idents, list) or not idents:
        raise AcmeProblem("malformed", "identifiers must be a non-empty array")
    out: list[dict[str, str]] = []
    bad: list[AcmeProblem] = []
    seen: set[str] = set()
    for ident in idents:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise AcmeProblem("malformed", "each identifier needs a type and a value")
        if ident.get("type") != "dns":
            raise AcmeProblem("unsupportedIdentifier",
                              f"identifier type {ident.get('type')!r} is not supported",
                              identifier=_echo(ident))
        try:
            value = dnsname.normalize(ident["value"])
        except dnsname.InvalidName as exc:
            bad.append(AcmeProblem("rejectedIdentifier", str(exc), identifier=_echo(ident)))
            continue
        if value not in seen:
            seen.add(value)
            out.append({"type": "dns", "value": value})
    if bad:
        raise AcmeProblem("rejectedIdentifier", "not DNS names this server accepts",
                          subproblems=bad)
    return out


def _echo(ident: dict[str, Any]) -> dict[str, str]:
    """An identifier as a problem document repeats it: strings only, bounded."""
    return {k: str(ident.get(k))[:300] for k in ("type", "value")}


def order_error(repo: Repo, row: dict[str, Any], problem: AcmeProblem) -> None:
    """Fail a processing order with ``problem`` (the error its clients will read)."""
    data = dict(row["data"])
    data["error"] = problem.to_json()
    # Only a processing order fails: never overwrite one that just became valid.
    repo.store.update(tables.orders, row["id"], where={"status": "processing"},
                      status="invalid", data=data)


def issue_for_order(repo: Repo, row: dict[str, Any], data: dict[str, Any],
                    request: IssueRequest, account_id: str) -> dict[str, Any]:
    """Finalize's issuance for order ``row`` (ready; ``data``: its data from now on). The
    order is claimed with a compare-and-set on ``ready`` (orderNotReady if another
    finalize was first); returns the order as the finalize answer shows it.

    An issuer that signs locally (``SignsNow``: the local CA) signs here, in the request's
    thread and store unit, and the order goes from ready to valid in one write: the
    certificate, the order and the request's nonce commit together, and a store error
    rolls it all back (a 503; the order is still ready). Any other issuer (an upstream CA:
    network, seconds) runs on the event loop while the order is processing, and the
    request waits up to ``FINALIZE_WAIT`` for it; a slow one leaves the order processing
    and the client polls."""
    issuer = repo.issuers.get(data["issuer"])
    if issuer is not None and not isinstance(issuer, SignsNow):
        _claim(repo, row, status="processing", data=data)
        repo.start_and_wait(issue_in_background(repo, row, data["issuer"], request,
                                                account_id),
                            f"issue-{row['id']}", FINALIZE_WAIT)
        return repo.store.get(tables.orders, row["id"]) or row
    try:
        if issuer is None:  # removed from the configuration since newOrder
            raise KeyError(data["issuer"])
        chain = issuer.sign_now(request)
    except Exception as exc:
        _claim(repo, row, status="processing", data=data)
        _issuer_failed(repo, row, data["issuer"], exc)
        return repo.store.get(tables.orders, row["id"]) or row
    cert_id = new_id()
    # Claimed and made valid at once; the certificate row follows in the same transaction.
    _claim(repo, row, status="valid", data=data, cert_id=cert_id)
    certstore.save_certificate(repo.store, repo.vault, chain, issuer=data["issuer"],
                               now=repo.clock(), order_id=row["id"], account_id=account_id,
                               cert_id=cert_id)
    return {**row, "status": "valid", "cert_id": cert_id, "data": data}


def _claim(repo: Repo, row: dict[str, Any], **values: Any) -> None:
    if not repo.store.update(tables.orders, row["id"], where={"status": "ready"}, **values):
        raise AcmeProblem("orderNotReady", "order is already being finalized")


def _issuer_failed(repo: Repo, row: dict[str, Any], issuer_name: str,
                   exc: Exception) -> None:
    """Fail the order with what clients may read: an ``IssuerError``'s message (written to
    be shown), else only the exception's type."""
    if isinstance(exc, IssuerError):
        log.warning("order %s: issuer %s failed: %s", row["id"], issuer_name, exc)
        order_error(repo, row, AcmeProblem("serverInternal", f"issuance failed: {exc}"))
        return
    log.error("order %s: issuer %s crashed", row["id"], issuer_name, exc_info=exc)
    order_error(repo, row, AcmeProblem("serverInternal",
                                       f"issuance failed: {type(exc).__name__}"))


async def issue_in_background(repo: Repo, row: dict[str, Any], issuer_name: str,
                              request: IssueRequest, account_id: str) -> None:
    try:
        chain = await repo.issuers[issuer_name].issue(request)
    except Exception as exc:
        _issuer_failed(repo, row, issuer_name, exc)
        return
    await asyncio.to_thread(_order_issued, repo, row["id"], chain, issuer_name, account_id)


def _order_issued(repo: Repo, order_id: str, chain: str, issuer: str, account_id: str) -> None:
    # One transaction: the certificate and the order that links it are stored together.
    with repo.store.unit():
        _store_issued(repo, order_id, chain, issuer, account_id)


def _store_issued(repo: Repo, order_id: str, chain: str, issuer: str, account_id: str) -> str:
    cert_id = certstore.save_certificate(repo.store, repo.vault, chain, issuer=issuer,
                                         now=repo.clock(), order_id=order_id,
                                         account_id=account_id)
    repo.store.update(tables.orders, order_id, status="valid", cert_id=cert_id)
    return cert_id
