"""Telling the issuing CA of a revocation, and retrying until it has heard.

rotation.py decides revocations; this module carries them upstream. The renewal loop calls
``retry_upstream`` on every pass for the ones the CA has not acknowledged (CA down, or the
process telling it died).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, runtime_checkable

from cryptography import x509

from certdepot.acme import crypto
from certdepot.repository import store as tables
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.rotation")

UPSTREAM_PENDING = "pending"
#: A revocation still "pending" this long after it was decided is retried.
PENDING_GRACE_SECONDS = 120.0


@runtime_checkable
class Revoker(Protocol):
    """An issuer that can tell its CA (or its own CRL/OCSP) of a revocation."""

    async def revoke(self, cert: x509.Certificate, reason: int) -> str:
        """Revoke upstream; returns what happened, in words for the inventory."""
        ...


async def tell_upstream(repo: Repo, cert_row: dict[str, Any], reason: int) -> str:
    """Revoke at the issuer; the outcome is stored on the revocation row either way."""
    # Typed as object: Issuer says nothing about revoke, and mypy does not intersect them.
    issuer: object = repo.issuers.get(cert_row["issuer"])
    if isinstance(issuer, Revoker):
        leaf = crypto.parse_pem_chain(cert_row["chain_pem"])[0]
        try:
            outcome = await issuer.revoke(leaf, reason)
        except Exception as exc:
            outcome = f"failed: {type(exc).__name__}: {exc}"[:480]
            log.warning("serial %s: upstream revocation failed, will retry: %s",
                        cert_row["serial"], outcome)
    else:
        outcome = f"not told: issuer {cert_row['issuer']} has no revocation"
    await asyncio.to_thread(repo.store.update, tables.revocations, cert_row["id"],
                            upstream=outcome)
    return outcome


async def retry_upstream(repo: Repo) -> None:
    """Tell the CA of revocations it has not acknowledged: a failed try, or one still
    pending long after it was decided (the process telling it died)."""
    rev_t = tables.revocations
    rows = await asyncio.to_thread(
        repo.store.select, rev_t, rev_t.c.upstream.like("failed:%") | (
            (rev_t.c.upstream == UPSTREAM_PENDING)
            & (rev_t.c.revoked_at < repo.clock() - PENDING_GRACE_SECONDS)))
    for rev in rows:
        cert = await asyncio.to_thread(repo.store.get, tables.certificates, rev["cert_id"])
        if cert is not None:
            await tell_upstream(repo, cert, int(rev["reason"]))
