"""RFC 9115 delegation: objects per tenant, orders that start ready, CSR checks."""

from __future__ import annotations

from typing import Any

from certdepot.acme.problems import AcmeProblem
from certdepot.repository import store as tables
from certdepot.repository.config import Delegation
from certdepot.repository.state import Repo
from certdepot.repository.store import Store


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


def cancel(store: Store, tenant: str, name: str) -> int:
    """Mark a delegation cancelled; returns how many auto-renewal orders it stops."""
    key = f"delegation-cancelled:{tenant}"
    names = {n for n in (store.get_blob(key) or b"").decode().split("\n") if n}
    names.add(name)
    store.put_blob(key, "\n".join(sorted(names)).encode())
    stopped = 0
    for row in store.select(tables.orders):
        data = row["data"]
        if data.get("delegation") == name and data.get("tenant") == tenant and \
                data.get("auto_renewal") and not data.get("star_cancelled"):
            store.update(tables.orders, row["id"], data={**data, "star_cancelled": True})
            stopped += 1
    return stopped


def create_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]
                 ) -> dict[str, Any]:
    raise AcmeProblem("unknownDelegation", "delegation is not implemented yet")


async def finalize(repo: Repo, account: dict[str, Any], row: dict[str, Any],
                   payload: dict[str, Any]) -> dict[str, Any]:
    raise AcmeProblem("unknownDelegation", "delegation is not implemented yet")
