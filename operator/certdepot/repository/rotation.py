"""Emergency rotation of a managed certificate: replace it at once, revoke the old one.

``rotate`` is what ``certdepot repository rotate NAME --reason keyCompromise`` and the admin
endpoint run: a replacement with a new key from the entry's issuer (with ``replaces`` where
the CA supports ARI), then the old certificate marked revoked here and revoked upstream with
the reason. Consumers learn it from ``renewalInfo``: a revoked certificate answers the
window fixed at revocation, wholly in the past, so every poll says "renew now" with the same
dates (a window recomputed per request made clients such as Caddy draw a new random moment
on each poll and never renew).

A revocation the upstream CA could not be told of (CA down) is retried by the renewal loop
(``upstream_revocation.retry_upstream``) until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from certdepot.repository import certstore, leases, renewal
from certdepot.repository import store as tables
from certdepot.repository.config import ManagedCertificate
from certdepot.repository.state import Repo
from certdepot.repository.upstream_revocation import (
    UPSTREAM_PENDING,
    retry_upstream,
    tell_upstream,
)

log = logging.getLogger("certdepot.repository.rotation")

#: RFC 5280 CRLReason codes an admin (or a tenant the policy allows) may give; the same set
#: RFC 8555 §7.6 lets ACME clients send (no cACompromise, certificateHold, removeFromCRL).
REASONS: dict[str, int] = {
    "unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
    "cessationOfOperation": 5, "privilegeWithdrawn": 9, "aACompromise": 10,
}
REASON_NAMES = {code: name for name, code in REASONS.items()}

#: The renewalInfo window of a revoked certificate: fixed at revocation, from an hour to a
#: minute before it. RFC 9773 §4.2: a window that ends in the past means "renew now".
WINDOW_BEFORE = (3600.0, 60.0)
#: How long ``rotate`` waits for the entry's renewal lease (another replica renewing it).
LEASE_WAIT_SECONDS = 60.0


class RotationError(Exception):
    """The rotation cannot be done; the message says why (safe to show the admin)."""


@dataclass(frozen=True)
class Rotation:
    name: str
    old_serial: str
    new_serial: str
    reason: str
    upstream: str
    consumers: int  # consumers that held the old serial: signalled through renewalInfo

    def as_json(self) -> dict[str, Any]:
        return {"certificate": self.name, "revokedSerial": self.old_serial,
                "newSerial": self.new_serial, "reason": self.reason,
                "upstream": self.upstream, "consumersSignalled": self.consumers}


def reason_code(name: str) -> int:
    try:
        return REASONS[name]
    except KeyError:
        raise RotationError(f"unknown reason {name!r} (use one of "
                            f"{', '.join(REASONS)})") from None


def explanation_url(repo: Repo, cert_row: dict[str, Any]) -> str:
    return f"{repo.config.base_url}/rotation/{cert_row['ari_id'] or cert_row['id']}"


def mark_revoked(repo: Repo, cert_row: dict[str, Any], reason: int, *, requested_by: str,
                 replaced_by: str | None = None) -> bool:
    """Record the revocation and fix the renewalInfo window (one transaction, or part of
    the request's); False if already revoked."""
    with repo.store.unit():
        if not repo.store.update(tables.certificates, cert_row["id"],
                                 where={"revoked": False}, revoked=True):
            return False
        now = repo.clock()
        repo.store.insert(tables.revocations, cert_id=cert_row["id"], reason=reason,
                          revoked_at=now, window_start=now - WINDOW_BEFORE[0],
                          window_end=now - WINDOW_BEFORE[1], replaced_by=replaced_by,
                          requested_by=requested_by[:200], upstream=UPSTREAM_PENDING)
    log.warning("certificate %s serial %s revoked (%s) by %s", cert_row["managed_name"] or
                cert_row["id"], cert_row["serial"], REASON_NAMES.get(reason, reason),
                requested_by)
    return True


def revocation(repo: Repo, cert_id: str) -> dict[str, Any] | None:
    return repo.store.get(tables.revocations, cert_id)


def _holders(repo: Repo, cert_id: str) -> int:
    return len(repo.store.find(tables.consumers, cert_id=cert_id))


async def _issue_replacement(repo: Repo, cfg: ManagedCertificate, old: dict[str, Any]) -> str:
    # renewal imports this module: imported here to keep the import graph acyclic.
    from certdepot.repository import renewal

    return await renewal.obtain(repo, cfg, old["ari_id"] or None)


async def _with_lease(repo: Repo, name: str) -> contextlib.AsyncExitStack:
    """The entry's renewal lease, so the renewal loop on any replica cannot order a second
    certificate meanwhile; close the returned stack to release it."""
    deadline = repo.clock() + LEASE_WAIT_SECONDS
    while True:
        stack = contextlib.AsyncExitStack()
        if await stack.enter_async_context(leases.held(repo, f"renew:{name}")):
            return stack
        await stack.aclose()
        if repo.clock() >= deadline:
            raise RotationError(f"{name}: another replica has been renewing it for "
                                f"{LEASE_WAIT_SECONDS:.0f}s; try again")
        await asyncio.sleep(0.5)


async def rotate(repo: Repo, name: str, reason: str, *, requested_by: str) -> Rotation:
    """Replace managed certificate ``name`` now and revoke the one it had."""
    code = reason_code(reason)
    cfg = repo.config.certificate(name)
    if cfg is None:
        raise RotationError(f"no managed certificate {name!r}")
    if not repo.issuers[cfg.issuer].can_issue:
        raise RotationError(f"{name}: issuer {cfg.issuer} cannot issue a replacement; import "
                            "a new certificate first (certdepot repository import)")
    held = await _with_lease(repo, name)
    try:
        old = await asyncio.to_thread(certstore.current_managed, repo.store, name)
        if old is None:
            raise RotationError(f"{name}: no certificate to rotate yet")
        try:
            new_id = await _issue_replacement(repo, cfg, old)
        except Exception as exc:
            # The old certificate stays current and unrevoked: revoking it with nothing to
            # replace it would take every consumer down.
            raise RotationError(f"{name}: the replacement could not be issued "
                                f"({type(exc).__name__}: {exc}); nothing was revoked") from None
    finally:
        await held.aclose()
    new = await asyncio.to_thread(repo.store.get, tables.certificates, new_id)
    assert new is not None
    await asyncio.to_thread(mark_revoked, repo, old, code, requested_by=requested_by,
                            replaced_by=new_id)
    upstream = await tell_upstream(repo, old, code)
    holders = await asyncio.to_thread(_holders, repo, old["id"])
    return Rotation(name, old["serial"], new["serial"], reason, upstream, holders)


async def reissue_revoked(repo: Repo, name: str) -> None:
    """After a revocation through ACME (a tenant the policy allows): the replacement at once
    and the upstream revocation, in the background of that request."""
    cfg = repo.config.certificate(name)
    if cfg is None:
        return
    await asyncio.to_thread(renewal.request_renewal, repo.store, name)  # past any backoff
    async with leases.held(repo, f"renew:{name}") as mine:
        if mine:  # else the replica holding it renews it in this very pass
            await renewal.check_one(repo, cfg)
    await retry_upstream(repo)
