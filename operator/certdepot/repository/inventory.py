"""What the repository holds and where each certificate went (``inventory`` CLI)."""

from __future__ import annotations

from typing import Any

from certdepot.repository import certstore
from certdepot.repository import store as tables
from certdepot.repository.config import Config
from certdepot.repository.store import Store


def collect(config: Config, store: Store) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cfg in config.certificates:
        cur = certstore.current_managed(store, cfg.name)
        state = store.get(tables.managed, cfg.name) or {}
        certs = store.select(tables.certificates,
                             tables.certificates.c.managed_name == cfg.name,
                             order_by=tables.certificates.c.created)
        entry: dict[str, Any] = {
            "name": cfg.name, "dns_names": cfg.dns_names, "issuer": cfg.issuer,
            "current": {"serial": cur["serial"], "not_after": cur["not_after"]} if cur else None,
            "last_error": state.get("last_error"),
            "certificates": [],
        }
        for c in certs:
            deliveries = store.select(tables.deliveries, tables.deliveries.c.cert_id == c["id"],
                                      order_by=tables.deliveries.c.delivered)
            entry["certificates"].append({
                "serial": c["serial"], "not_before": c["not_before"],
                "not_after": c["not_after"], "revoked": c["revoked"],
                "deliveries": [{"tenant": d["tenant"], "account_id": d["account_id"],
                                "delivered": d["delivered"]} for d in deliveries]})
        out.append(entry)
    return out
