"""STAR-style auto-renewal (RFC 8739) of delegated orders.

A valid auto-renewal order keeps its CSR; before half of the current certificate's lifetime
has passed the repository (one replica, under a lease) issues the next one from that CSR.
The order's ``star-certificate`` URL always serves the current certificate. Cancellation
(admin CLI, delegation removed from the configuration, or the client) stops renewal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from certdepot.acme.jws import b64decode
from certdepot.acme.messages import parse_time
from certdepot.repository import certstore, delegation, leases
from certdepot.repository import store as tables
from certdepot.repository.issuers import IssueRequest
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.star")


def state(repo: Repo, row: dict[str, Any]) -> str:
    """active | canceled | expired."""
    data = row["data"]
    if data.get("star_cancelled"):
        return "canceled"
    end = parse_time(data["auto_renewal"]["end-date"], "end-date")
    if end is not None and end.timestamp() <= repo.clock():
        return "expired"
    return "active"


def _withdrawn(repo: Repo, data: dict[str, Any]) -> bool:
    tenant = repo.tenant(data.get("tenant"))
    if tenant is None:
        return True
    names = {d.name for d in tenant.delegations} - delegation.cancelled_names(
        repo.store, tenant.name)
    return data.get("delegation") not in names


async def renew_order(repo: Repo, row: dict[str, Any]) -> str:
    data = row["data"]
    lifetime = dt.timedelta(seconds=int(data["auto_renewal"]["lifetime"]))
    names = sorted(i["value"] for i in data["identifiers"])
    chain = await repo.issuers[data["issuer"]].issue(IssueRequest(
        csr_der=b64decode(data["csr"]), dns_names=names, lifetime=lifetime,
        profile=data.get("profile")))
    return await asyncio.to_thread(_save, repo, row, chain)


def _save(repo: Repo, row: dict[str, Any], chain: str) -> str:
    data = row["data"]
    cert_id = certstore.save_certificate(repo.store, repo.vault, chain, issuer=data["issuer"],
                                         now=repo.clock(), order_id=row["id"],
                                         account_id=row["account_id"])
    repo.store.update(tables.orders, row["id"], cert_id=cert_id)
    return cert_id


def _due(repo: Repo) -> list[dict[str, Any]]:
    """Active auto-renewal orders whose certificate is at half-time (worker thread).
    Orders whose delegation was withdrawn are cancelled on the way."""
    due = []
    for row in repo.store.select(tables.orders, tables.orders.c.status == "valid"):
        data = row["data"]
        if not data.get("auto_renewal") or data.get("star_cancelled") or not data.get("csr"):
            continue
        if _withdrawn(repo, data):
            repo.store.update(tables.orders, row["id"], data={**data, "star_cancelled": True})
            log.info("STAR order %s: delegation withdrawn, renewal stopped", row["id"])
            continue
        if state(repo, row) != "active":
            continue
        cert = repo.store.get(tables.certificates, row["cert_id"]) if row["cert_id"] else None
        if cert is None:
            continue
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
                await renew_order(repo, row)
                log.info("STAR order %s renewed", row["id"])
            except Exception as exc:  # keep serving the current one; next pass retries
                log.warning("STAR order %s: renewal failed: %s", row["id"], exc)
