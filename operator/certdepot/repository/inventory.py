"""What the repository holds and where each certificate went (``inventory`` CLI and the
admin API's ``GET /admin/v1/inventory``). The JSON shape is documented in
docs/operations.md ("Inventory JSON") and only grows: tools such as the kubectl plugin
read it."""

from __future__ import annotations

from typing import Any

from certdepot.repository import certstore, rotation
from certdepot.repository import store as tables
from certdepot.repository.config import Config
from certdepot.repository.store import Store

#: The ``apiVersion`` of the admin API's inventory document.
API_VERSION = "certdepot.io/inventory/v1"


def _revocation(store: Store, cert: dict[str, Any],
                serials: dict[str, str]) -> dict[str, Any] | None:
    if not cert["revoked"]:
        return None
    rev = store.get(tables.revocations, cert["id"])
    if rev is None:
        return {"reason": "unspecified", "revoked_at": None, "replaced_by": None,
                "upstream": None}
    return {"reason": rotation.REASON_NAMES.get(rev["reason"], "unspecified"),
            "revoked_at": rev["revoked_at"], "requested_by": rev["requested_by"],
            "replaced_by": serials.get(rev["replaced_by"] or ""), "upstream": rev["upstream"]}


def _consumer(row: dict[str, Any], current_id: str | None,
              revoked: set[str]) -> dict[str, Any]:
    state = ("current" if row["cert_id"] == current_id else
             "revoked" if row["cert_id"] in revoked else "superseded")
    return {"tenant": row["tenant"], "account_id": row["account_id"],
            "cluster": row["cluster"] or None, "resource": row["resource"] or None,
            "serial": row["serial"], "state": state, "delivered": row["delivered"],
            "last_checkin": row["last_checkin"]}


def collect(config: Config, store: Store, *, stale: bool = False) -> list[dict[str, Any]]:
    """Every managed certificate with its certificates, deliveries and consumers. With
    ``stale`` only consumers on a revoked or superseded serial, and only the
    certificates that have such consumers."""
    out: list[dict[str, Any]] = []
    for cfg in config.certificates:
        cur = certstore.current_managed(store, cfg.name)
        state = store.get(tables.managed, cfg.name) or {}
        certs = store.select(tables.certificates,
                             tables.certificates.c.managed_name == cfg.name,
                             order_by=tables.certificates.c.created)
        serials = {c["id"]: c["serial"] for c in certs}
        revoked = {c["id"] for c in certs if c["revoked"]}
        current_id = cur["id"] if cur else None
        people = [_consumer(r, current_id, revoked) for r in store.select(
            tables.consumers, tables.consumers.c.managed_name == cfg.name,
            order_by=tables.consumers.c.id)]
        if stale:
            people = [p for p in people if p["state"] != "current"]
            if not people:
                continue
        entry: dict[str, Any] = {
            "name": cfg.name, "dns_names": cfg.dns_names, "issuer": cfg.issuer,
            "current": {"serial": cur["serial"], "not_after": cur["not_after"]} if cur else None,
            "last_error": state.get("last_error"),
            "consumers": people,
            "certificates": [],
        }
        for c in certs:
            deliveries = store.select(tables.deliveries, tables.deliveries.c.cert_id == c["id"],
                                      order_by=tables.deliveries.c.delivered)
            entry["certificates"].append({
                "serial": c["serial"], "not_before": c["not_before"],
                "not_after": c["not_after"], "revoked": c["revoked"],
                "revocation": _revocation(store, c, serials),
                "deliveries": [{"tenant": d["tenant"], "account_id": d["account_id"],
                                "delivered": d["delivered"]} for d in deliveries]})
        out.append(entry)
    return out


def document(config: Config, store: Store, *, stale: bool = False) -> dict[str, Any]:
    """The admin API's inventory: versioned, so readers can tell shapes apart."""
    return {"apiVersion": API_VERSION, "certificates": collect(config, store, stale=stale)}
