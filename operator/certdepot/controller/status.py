"""Status documents for the Secret-producing kinds (CertificateDownload, DelegatedCertificate)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certdepot.acme.timefmt import rfc3339
from certdepot.controller.conditions import Condition, set_condition
from certdepot.controller.errors import Outcome
from certdepot.controller.tlsdata import CertInfo


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
