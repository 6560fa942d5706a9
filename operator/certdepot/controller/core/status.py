"""What status says: Kubernetes-style conditions, and the status documents of the
Secret-producing kinds (CertificateDownload, DelegatedCertificate).

A condition keeps its lastTransitionTime while its status is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certdepot.acme.timefmt import rfc3339
from certdepot.controller.core.certinfo import CertInfo
from certdepot.controller.core.errors import Outcome


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


def ready(
    status: Mapping[str, Any],
    *,
    info: CertInfo,
    renewal_time: datetime | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": set_condition(
            status.get("conditions"),
            Condition("Ready", "True", reason, message),
            now=now,
            generation=generation,
        ),
        "notBefore": rfc3339(info.not_before),
        "notAfter": rfc3339(info.not_after),
        "renewalTime": rfc3339(renewal_time) if renewal_time else None,
        "serial": info.serial,
        "fingerprint": info.fingerprint,
        "failedAttempts": 0,
        "lastFailureTime": None,
        "lastFailureMessage": None,
    }
    out.update(extra or {})
    return out


def failed(
    status: Mapping[str, Any],
    *,
    outcome: Outcome,
    attempts: int,
    still_valid: CertInfo | None,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """A failed attempt. Ready stays True while the Secret still holds a valid certificate."""
    if still_valid is not None and outcome.reason != "SecretConflict":
        cond = Condition(
            "Ready",
            "True",
            "RenewalFailed",
            f"the Secret still holds a valid certificate; last attempt: {outcome.message}",
        )
    else:
        cond = Condition("Ready", "False", outcome.reason, outcome.message)
    return {
        "observedGeneration": generation,
        "conditions": set_condition(status.get("conditions"), cond, now=now, generation=generation),
        "failedAttempts": attempts,
        "lastFailureTime": rfc3339(now),
        "lastFailureMessage": outcome.message,
    }
