"""The flow every Secret-producing kind shares: begin a step, keep or install a certificate, fail.

CertificateDownload (:mod:`.download`) and DelegatedCertificate (:mod:`.delegated`) both read
their Secret and resolve their repository before deciding anything, both report a kept or a
new certificate the same way, and both turn every error into status; only how they get a
certificate differs. The kind calls these functions in this order and they never call back
into it::

    start = await begin(body, deps, KIND)      # the Secret read, the repository resolved
    ... the kind decides and gets a certificate ...
    await up_to_date(start, deps, decision)    # or: await install(start, deps, bundle, ...)
    finish(start, step)                        # or, on any error: fail(start, deps, error)

One :class:`Start` is passed along whole: it holds what the step knows about its object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller.core import renewrequest
from certdepot.controller.core import status as status_doc
from certdepot.controller.core.certinfo import Bundle, CertInfo
from certdepot.controller.core.errors import Outcome, classify
from certdepot.controller.gateway.model import Endpoint
from certdepot.controller.kinds.decisions import Decision
from certdepot.controller.kinds.deps import Deps, Memory, Step
from certdepot.controller.kube import lookup, secrets

log = logging.getLogger("certdepot.operator")


@dataclass(frozen=True)
class Start:
    """What a step of a Secret-producing kind knows once its Secret is read and its repository
    resolved."""

    kind: str
    body: Mapping[str, Any]
    now: datetime
    owner: secrets.Owner
    memory: Memory
    state: secrets.SecretState
    endpoint: Endpoint
    # A `kubectl certdepot renew` request not yet honoured (see renewrequest).
    renewal_request: str | None = None

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.body.get("metadata") or {}

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.body.get("spec") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}


# --- begin ----------------------------------------------------------------------------------


async def begin(body: Mapping[str, Any], deps: Deps, kind: str) -> Start | Step:
    """Read the Secret and resolve the repository. When either fails, the failed step instead
    (its status says why); never raises."""
    now = deps.clock()
    spec = body.get("spec") or {}
    owner = secrets.owner_of(body, kind)
    memory = deps.memory(owner.uid or owner.ref)
    state: secrets.SecretState | None = None
    try:
        state = await _secret_state(body, deps, owner)
        endpoint = await lookup.resolve(
            deps.kube,
            spec.get("repositoryRef") or {},
            owner.namespace,
            deps.settings,
            deps.objects,
        )
    except Exception as error:
        return _failed(body, deps, error, kind=kind, memory=memory, state=state, now=now)
    return Start(
        kind=kind,
        body=body,
        now=now,
        owner=owner,
        memory=memory,
        state=state,
        endpoint=endpoint,
        renewal_request=renewrequest.pending(body.get("metadata") or {}, body.get("status") or {}),
    )


async def _secret_state(
    body: Mapping[str, Any], deps: Deps, owner: secrets.Owner
) -> secrets.SecretState:
    """The Secret, read; but not on an object's very first step (no status yet, no adoption
    asked): a new object's Secret is almost always missing, so it is created without a GET
    first, and read only if it turns out to exist (secrets.write_bundle). A rollout of N
    objects saves N GETs; the check that a Secret not ours is never overwritten stays."""
    spec = body.get("spec") or {}
    if not (body.get("status") or {}).get("conditions") and not spec.get("adoptExistingSecret"):
        return secrets.UNREAD
    return secrets.inspect(await deps.kube.get_secret(owner.namespace, spec["secretName"]), owner)


# --- the certificate kept, or a new one installed ---------------------------------------------


def wait_until(moment: datetime, now: datetime, recheck: timedelta) -> float:
    """Seconds to the next step: at ``moment``, but at least every ``recheck`` (and >= 1 s)."""
    return max(1.0, min((moment - now).total_seconds(), recheck.total_seconds()))


async def up_to_date(
    start: Start, deps: Deps, decision: Decision, *, extra: Mapping[str, Any] | None = None
) -> Step:
    """The Secret's certificate stays; its Secret is put right first if it was altered."""
    state, owner, now = start.state, start.owner, start.now
    assert state.bundle is not None and state.info is not None  # decide() guarantees it
    if decision.rewrite:
        await secrets.write_bundle(deps.kube, start.body, owner, state, state.bundle)
    deps.metrics.observe(
        owner.kind,
        owner.namespace,
        owner.name,
        ready=True,
        not_after=state.info.not_after,
        renewal=decision.renewal_time,
    )
    start.memory.last_warning = ""
    new_status = status_doc.ready(
        start.status,
        info=state.info,
        renewal_time=decision.renewal_time,
        reason="UpToDate",
        message=f"Secret {start.spec['secretName']} holds certificate {state.info.serial}",
        now=now,
        generation=start.meta.get("generation"),
        extra=extra,
    )
    delay = (decision.next_check - now).total_seconds() if decision.next_check else 60.0
    return Step(new_status, max(1.0, delay))


async def install(
    start: Start,
    deps: Deps,
    bundle: Bundle,
    *,
    leaf: CertInfo,
    renew_at: datetime,
    reason: str,
    fetch_reason: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a new certificate to the Secret, replaced in one update (never deleted first:
    consumers never see it empty), then report it: an Event, metrics, the new status."""
    await secrets.write_bundle(deps.kube, start.body, start.owner, start.state, bundle)
    owner = start.owner
    deps.events(start.body, "Normal", reason, message)
    deps.metrics.fetches.labels(owner.kind, fetch_reason).inc()
    deps.metrics.observe(
        owner.kind,
        owner.namespace,
        owner.name,
        ready=True,
        not_after=leaf.not_after,
        renewal=renew_at,
    )
    return status_doc.ready(
        start.status,
        info=leaf,
        renewal_time=renew_at,
        reason=reason,
        message=message,
        now=start.now,
        generation=start.meta.get("generation"),
        extra=extra,
    )


# --- end: finish or fail ----------------------------------------------------------------------


def finish(start: Start, step: Step) -> Step:
    """The kind's step, with a renewal request recorded when it wrote a certificate."""
    return Step(renewrequest.record(step.status, start.renewal_request), step.delay)


def fail(start: Start, deps: Deps, error: BaseException) -> Step:
    """Any error of the kind's step becomes status, metrics, one Event, one log line."""
    return _failed(
        start.body,
        deps,
        error,
        kind=start.kind,
        memory=start.memory,
        state=start.state,
        now=start.now,
    )


def _failed(
    body: Mapping[str, Any],
    deps: Deps,
    error: BaseException,
    *,
    kind: str,
    memory: Memory,
    state: secrets.SecretState | None,
    now: datetime,
) -> Step:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    attempts = int(status.get("failedAttempts") or 0) + 1
    outcome = classify(error, attempts, deps.settings.backoff)
    valid = still_valid(state, body.get("spec") or {}, now)
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
    announce(body, deps, outcome, kind=kind, who=who, memory=memory, attempts=attempts)
    return Step(new_status, outcome.retry_after)


def announce(
    body: Mapping[str, Any],
    deps: Deps,
    outcome: Outcome,
    *,
    kind: str,
    who: str,
    memory: Memory,
    attempts: int,
) -> None:
    """Count the failure, log it, and post it as an Event unless it repeats the last one
    (used by every kind, the repository objects' too)."""
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
) -> CertInfo | None:
    if state is None or not state.ours or state.info is None:
        return None
    names = frozenset(n.lower() for n in spec.get("dnsNames") or [])
    if state.info.dns_names != names or state.info.not_after <= now:
        return None
    return state.info
