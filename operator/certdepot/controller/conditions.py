"""Kubernetes-style conditions: set one, keep lastTransitionTime when the status is unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certdepot.acme.timefmt import rfc3339


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def set_condition(
    existing: Sequence[Mapping[str, Any]] | None,
    new: Condition,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return the condition list with ``new`` merged in (other types kept as they were)."""
    out: list[dict[str, Any]] = []
    replaced = False
    for cond in existing or ():
        if cond.get("type") != new.type:
            out.append(dict(cond))
            continue
        replaced = True
        same = cond.get("status") == new.status
        out.append(
            _render(new, cond.get("lastTransitionTime") if same else rfc3339(now), generation)
        )
    if not replaced:
        out.append(_render(new, rfc3339(now), generation))
    return out


def get_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type_: str
) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def _render(cond: Condition, transition: Any, generation: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": cond.type,
        "status": cond.status,
        "reason": cond.reason,
        "message": cond.message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out
