"""STAR-style auto-renewal (RFC 8739) of delegated orders.

A valid auto-renewal order keeps its CSR; before half of the current certificate's lifetime
has passed the repository (one replica, under a lease) issues the next one from that CSR,
after checking the order's grant again (grants.py) and computing the new certificate's
window with the limits then in force (validity.py); the last certificate ends at the
order's end-date. An order whose grant or limits no longer hold is canceled.
The order's ``star-certificate`` URL always serves the current certificate. Cancellation
(admin CLI, delegation removed from the configuration, or the client) stops renewal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from certdepot.acme import fields
from certdepot.acme.jws import b64decode
from certdepot.acme.messages import parse_time
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import certstore, delegation, grants, leases, validity
from certdepot.repository import store as tables
from certdepot.repository.issuers import IssueRequest
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.star")


def state(repo: Repo, row: dict[str, Any]) -> str:
    """active | canceled | expired."""
    data = row["data"]
    if data.get("star_cancelled"):
        return "canceled"
    end = parse_time(data["auto_renewal"][fields.END_DATE], fields.END_DATE)
    if end is not None and end.timestamp() <= repo.clock():
        return "expired"
    return "active"


def require_active(repo: Repo, row: dict[str, Any]) -> None:
    """RFC 8739 §3.3: a canceled or ended STAR order serves no certificate."""
    st = state(repo, row)
    if st == "canceled":
        raise AcmeProblem("autoRenewalCanceled", "auto-renewal was canceled")
    if st == "expired":
        raise AcmeProblem("autoRenewalExpired", "auto-renewal has ended")


def _stop(repo: Repo, row: dict[str, Any], why: str) -> None:
    repo.store.update(tables.orders, row["id"], data={**row["data"], "star_cancelled": True})
    log.warning("STAR order %s: renewal stopped: %s", row["id"], why)


async def renew_order(repo: Repo, row: dict[str, Any]) -> str | None:
    """Issue the order's next certificate; None when policy refused it (the order is then
    canceled: its grant or its limits no longer hold)."""
    data = row["data"]
    try:
        win = await asyncio.to_thread(_next_window, repo, row)
    except AcmeProblem as exc:
        await asyncio.to_thread(_stop, repo, row, exc.detail)
        return None
    not_before, not_after = win.datetimes()
    names = sorted(i["value"] for i in data["identifiers"])
    chain = await repo.issuers[data["issuer"]].issue(IssueRequest(
        csr_der=b64decode(data["csr"]), dns_names=names,
        lifetime=dt.timedelta(seconds=round(win.lifetime)), profile=data.get("profile"),
        not_before=not_before, not_after=not_after))
    return await asyncio.to_thread(_save, repo, row, chain)


def _next_window(repo: Repo, row: dict[str, Any]) -> validity.Window:
    """Policy again for every renewal: the grant (grants.py), then the validity window
    with the delegation's limits as they are now (validity.py)."""
    account = grants.owner(repo, row)
    reason = grants.refused(repo, row, account)
    if reason is not None:
        raise grants.refuse(repo, row, account, "star-renewal", reason)
    assert account is not None
    d = delegation.active(repo, account, row["data"]["delegation"])
    try:
        return delegation.issue_window(repo, d, row["data"])
    except AcmeProblem:
        repo.count_refusal("star-renewal", "validity-limits")
        raise


def _save(repo: Repo, row: dict[str, Any], chain: str) -> str:
    data = row["data"]
    cert_id = certstore.save_certificate(repo.store, repo.vault, chain, issuer=data["issuer"],
                                         now=repo.clock(), order_id=row["id"],
                                         account_id=row["account_id"])
    repo.store.update(tables.orders, row["id"], cert_id=cert_id)
    return cert_id


def _due(repo: Repo) -> list[dict[str, Any]]:
    """Active auto-renewal orders whose certificate is at half-time (worker thread).
    Orders whose grant no longer holds (delegation withdrawn, names no longer covered,
    account deactivated) are canceled on the way."""
    due = []
    for row in repo.store.select(tables.orders, tables.orders.c.status == "valid"):
        data = row["data"]
        if not data.get("auto_renewal") or data.get("star_cancelled") or not data.get("csr"):
            continue
        if state(repo, row) != "active":
            continue
        account = grants.owner(repo, row)
        reason = grants.refused(repo, row, account)
        if reason is not None:  # checked each pass, not only when due: stop it now
            grants.refuse(repo, row, account, "star-renewal", reason)
            _stop(repo, row, reason)
            continue
        cert = repo.store.get(tables.certificates, row["cert_id"]) if row["cert_id"] else None
        end = parse_time(data["auto_renewal"][fields.END_DATE], fields.END_DATE)
        if cert is None or (end is not None and cert["not_after"] >= end.timestamp()):
            continue  # the current certificate already reaches the end-date: the last one
        life = cert["not_after"] - cert["not_before"]
        # Renew a little before half-time so the new certificate overlaps comfortably.
        if repo.clock() >= cert["not_before"] + life / 2 - min(60.0, life / 8):
            due.append(row)
    return due


def _unchanged(repo: Repo, row: dict[str, Any]) -> bool:
    fresh = repo.store.get(tables.orders, row["id"])
    return fresh is not None and fresh["cert_id"] == row["cert_id"]


async def run_once(repo: Repo) -> None:
    for row in await asyncio.to_thread(_due, repo):
        async with leases.held(repo, f"star:{row['id']}") as mine:
            # Another replica may have renewed it between our reading and our lease.
            if not mine or not await asyncio.to_thread(_unchanged, repo, row):
                continue
            try:
                if await renew_order(repo, row) is not None:
                    log.info("STAR order %s renewed", row["id"])
            except Exception as exc:  # keep serving the current one; next pass retries
                log.warning("STAR order %s: renewal failed: %s", row["id"], exc)
