"""A failed step: status, metrics, one Event, one log line (:func:`announce` for every kind)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certdepot.controller.core import certinfo
from certdepot.controller.core import status as status_doc
from certdepot.controller.core.errors import Outcome, classify
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.kube import secrets

log = logging.getLogger("certdepot.operator")


def failure(
    body: Mapping[str, Any],
    deps: Deps,
    memory: Memory,
    error: BaseException,
    state: secrets.SecretState | None,
    now: datetime,
    kind: str,
) -> Step:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    attempts = int(status.get("failedAttempts") or 0) + 1
    outcome = classify(error, attempts, deps.settings.backoff)
    valid = still_valid(state, spec, now)
    new_status = status_doc.failed(
        status,
        outcome=outcome,
        attempts=attempts,
        still_valid=valid,
        now=now,
        generation=meta.get("generation"),
    )
    deps.metrics.observe(
        kind,
        str(meta.get("namespace")),
        str(meta.get("name")),
        ready=valid is not None and outcome.reason != "SecretConflict",
    )
    who = f"{meta.get('namespace')}/{meta.get('name')}"
    announce(body, deps, memory, kind, who, outcome, attempts)
    return Step(new_status, outcome.retry_after)


def announce(
    body: Mapping[str, Any],
    deps: Deps,
    memory: Memory,
    kind: str,
    who: str,
    outcome: Outcome,
    attempts: int,
) -> None:
    """Count the failure, log it, and post it as an Event unless it repeats the last one."""
    deps.metrics.reconcile_errors.labels(kind, outcome.reason).inc()
    # Messages come from errors.classify: problem details and our own text, never key bytes.
    log.warning(
        "%s %s: %s: %s (attempt %d, retry in %.0fs)",
        kind,
        who,
        outcome.reason,
        outcome.message,
        attempts,
        outcome.retry_after,
    )
    if outcome.message != memory.last_warning:
        # One Event per distinct failure; repeats are visible in failedAttempts.
        deps.events(body, "Warning", outcome.reason, outcome.message)
        memory.last_warning = outcome.message


def still_valid(
    state: secrets.SecretState | None, spec: Mapping[str, Any], now: datetime
) -> certinfo.CertInfo | None:
    if state is None or not state.ours or state.info is None:
        return None
    names = frozenset(n.lower() for n in spec.get("dnsNames") or [])
    if state.info.dns_names != names or state.info.not_after <= now:
        return None
    return state.info
