"""The end-of-demo table: resource, Ready, Secret, issuer, not-after, serial."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certdepot.demo.manifests import Expected

NONE = "-"
HEADERS = ("RESOURCE", "READY", "SECRET", "ISSUER", "NOT AFTER", "SERIAL")


@dataclass(frozen=True)
class Row:
    resource: str
    ready: str
    secret: str
    issuer: str
    not_after: str
    serial: str

    def cells(self) -> tuple[str, ...]:
        return (self.resource, self.ready, self.secret, self.issuer, self.not_after,
                self.serial)


def row(item: Expected, obj: Mapping[str, Any], issuer: str = NONE,
        namespace: str | None = None) -> Row:
    """``namespace``: where the Secret is when ``item`` is cluster-scoped."""
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    secret_ref = item.secret_name or status.get("accountKeySecretName") or NONE
    if (item.namespace or namespace) and secret_ref != NONE:
        secret_ref = f"{item.namespace or namespace}/{secret_ref}"
    return Row(
        resource=item.label,
        ready=str(ready.get("status", "Unknown")),
        secret=secret_ref,
        issuer=issuer,
        not_after=str(status.get("notAfter") or "-"),
        serial=str(status.get("serial") or "-"),
    )


def render(rows: Sequence[Row]) -> str:
    table = [HEADERS, *(r.cells() for r in rows)]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    )
