"""RFC 9115 delegation: objects per tenant, orders that start ready, CSR checks."""

from __future__ import annotations

from typing import Any

from certdepot.acme.problems import AcmeProblem
from certdepot.repository.config import Delegation
from certdepot.repository.state import Repo


def delegations_for(repo: Repo, account: dict[str, Any]) -> list[Delegation]:
    tenant = repo.tenant(account.get("tenant"))
    if tenant is None:
        return []
    cancelled = {d["name"] for d in cancelled_delegations(repo, tenant.name)}
    return [d for d in tenant.delegations if d.name not in cancelled]


def cancelled_delegations(repo: Repo, tenant: str) -> list[dict[str, str]]:
    blob = repo.store.get_blob(f"delegation-cancelled:{tenant}")
    if not blob:
        return []
    return [{"name": n} for n in blob.decode().split("\n") if n]


def create_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]
                 ) -> dict[str, Any]:
    raise AcmeProblem("unknownDelegation", "delegation is not implemented yet")


async def finalize(repo: Repo, account: dict[str, Any], row: dict[str, Any],
                   payload: dict[str, Any]) -> dict[str, Any]:
    raise AcmeProblem("unknownDelegation", "delegation is not implemented yet")
