"""CertificateDownload: one reconcile step, from the object to a Secret and a status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller import decisions, repolookup, secrets, secretwriter, tlsdata
from certdepot.controller import status as status_doc
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.durations import parse_duration
from certdepot.controller.errors import ReconcileError, SecretConflict, classify
from certdepot.controller.gateway import Endpoint

KIND = "CertificateDownload"
log = logging.getLogger("certdepot.operator")


def owner_of(body: Mapping[str, Any], kind: str) -> secrets.Owner:
    meta = body.get("metadata") or {}
    return secrets.Owner(
        kind, str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid") or "")
    )


def renew_before_of(spec: Mapping[str, Any]) -> timedelta | None:
    raw = spec.get("renewBefore")
    return parse_duration(str(raw)) if raw else None


async def reconcile(body: Mapping[str, Any], deps: Deps) -> Step:
    """Bring the Secret in line with the spec; never raises (errors become status)."""
    now = deps.clock()
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    generation = meta.get("generation")
    owner = owner_of(body, KIND)
    memory = deps.memory(owner.uid or owner.ref)
    state: secrets.SecretState | None = None
    try:
        state = secrets.inspect(
            await deps.kube.get_secret(owner.namespace, spec["secretName"]), owner
        )
        endpoint, _repo = await repolookup.resolve(
            deps.kube, spec.get("repositoryRef") or {}, owner.namespace, deps.settings
        )
        window = await _renewal_window(deps, memory, endpoint, state, now)
        decision = decisions.decide(
            dns_names=spec.get("dnsNames") or [],
            renew_before=renew_before_of(spec),
            state=state,
            status=status,
            generation=generation,
            adopt=bool(spec.get("adoptExistingSecret")),
            now=now,
            window=window,
            recheck=deps.settings.recheck,
        )
        if decision.conflict:
            raise SecretConflict(decision.message)
        if decision.fetch:
            return await _fetch(body, deps, endpoint, state, decision, now)
        assert state.bundle is not None and state.info is not None  # decide() guarantees it
        if decision.rewrite:
            await _write(
                deps, body, owner, state, state.bundle.chain, state.bundle.root, state.bundle.key
            )
        new_status = status_doc.ready(
            status,
            info=state.info,
            renewal_time=decision.renewal_time,
            reason="UpToDate",
            message=f"Secret {spec['secretName']} holds certificate {state.info.serial}",
            now=now,
            generation=generation,
        )
        deps.metrics.observe(
            KIND,
            owner.namespace,
            owner.name,
            ready=True,
            not_after=state.info.not_after,
            renewal=decision.renewal_time,
        )
        memory.last_warning = ""
        delay = (decision.next_check - now).total_seconds() if decision.next_check else 60.0
        return Step(new_status, max(1.0, delay))
    except Exception as error:
        return failure(body, deps, memory, error, state, now, KIND)


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
    valid = _still_valid(state, spec, now)
    new_status = status_doc.failed(
        status,
        outcome=outcome,
        attempts=attempts,
        still_valid=valid,
        now=now,
        generation=meta.get("generation"),
    )
    deps.metrics.reconcile_errors.labels(kind, outcome.reason).inc()
    deps.metrics.observe(
        kind,
        str(meta.get("namespace")),
        str(meta.get("name")),
        ready=valid is not None and outcome.reason != "SecretConflict",
    )
    # Messages come from errors.classify: problem details and our own text, never key bytes.
    log.warning(
        "%s %s/%s: %s: %s (attempt %d, retry in %.0fs)",
        kind,
        meta.get("namespace"),
        meta.get("name"),
        outcome.reason,
        outcome.message,
        attempts,
        outcome.retry_after,
    )
    if outcome.message != memory.last_warning:
        # One Event per distinct failure; repeats are visible in failedAttempts.
        deps.events(body, "Warning", outcome.reason, outcome.message)
        memory.last_warning = outcome.message
    return Step(new_status, outcome.retry_after)


def _still_valid(
    state: secrets.SecretState | None, spec: Mapping[str, Any], now: datetime
) -> tlsdata.CertInfo | None:
    if state is None or not state.ours or state.info is None:
        return None
    names = frozenset(n.lower() for n in spec.get("dnsNames") or [])
    if state.info.dns_names != names or state.info.not_after <= now:
        return None
    return state.info


async def _renewal_window(
    deps: Deps, memory: Memory, endpoint: Endpoint, state: secrets.SecretState, now: datetime
) -> decisions.RenewalWindow | None:
    """Ask ARI at most every renewal_info_interval; an ARI failure never blocks a reconcile."""
    if not state.ours or state.bundle is None or state.info is None:
        return None
    fresh = memory.window is not None and memory.window.serial == state.info.serial
    due = (
        memory.window_checked_at is None
        or now - memory.window_checked_at >= deps.settings.renewal_info_interval
    )
    if fresh and not due:
        return memory.window
    memory.window_checked_at = now
    try:
        memory.window = await deps.gateway.renewal_window(endpoint, state.bundle.chain[0])
    except Exception:
        memory.window = None
    return memory.window


async def _fetch(
    body: Mapping[str, Any],
    deps: Deps,
    endpoint: Endpoint,
    state: secrets.SecretState,
    decision: decisions.Decision,
    now: datetime,
) -> Step:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    owner = owner_of(body, KIND)
    names = list(spec.get("dnsNames") or [])
    result = await deps.gateway.download(endpoint, names)
    chain, root = tlsdata.separate_root(tlsdata.split_chain(result.chain_pem))
    leaf = tlsdata.cert_info(chain[0])
    if not tlsdata.key_matches(chain[0], result.key):
        raise ReconcileError(
            "InvalidDownload", "the downloaded key does not match the certificate", permanent=False
        )
    if leaf.dns_names != frozenset(n.lower() for n in names):
        raise ReconcileError(
            "InvalidDownload",
            "the downloaded certificate's names differ from spec.dnsNames",
            permanent=False,
        )
    if leaf.not_after <= now:
        raise ReconcileError(
            "InvalidDownload", "the repository served an expired certificate", permanent=False
        )
    if state.info is not None and state.ours and leaf.serial == state.info.serial:
        # The repository has nothing newer: don't ask again for this serial until ARI changes.
        deps.memory(owner.uid or owner.ref).window = None
    await _write(deps, body, owner, state, chain, root, result.key)
    renew_at = decisions.renewal_time(renew_before_of(spec), leaf.not_before, leaf.not_after)
    message = (
        f"certificate {leaf.serial} written to Secret {spec['secretName']} ({decision.reason})"
    )
    deps.events(body, "Normal", "Downloaded", message)
    log.info("%s %s/%s: %s", KIND, owner.namespace, owner.name, message)
    deps.metrics.fetches.labels(KIND, decision.reason).inc()
    deps.metrics.observe(
        KIND, owner.namespace, owner.name, ready=True, not_after=leaf.not_after, renewal=renew_at
    )
    deps.memory(owner.uid or owner.ref).last_warning = ""
    new_status = status_doc.ready(
        status,
        info=leaf,
        renewal_time=renew_at,
        reason="Downloaded",
        message=message,
        now=now,
        generation=meta.get("generation"),
        extra={"certificateURL": result.certificate_url or None},
    )
    delay = min((renew_at - now).total_seconds(), deps.settings.recheck.total_seconds())
    return Step(new_status, max(1.0, delay))


async def _write(
    deps: Deps,
    body: Mapping[str, Any],
    owner: secrets.Owner,
    state: secrets.SecretState,
    chain: list[Any],
    root: Any,
    key: tlsdata.PrivateKey,
) -> None:
    spec = body.get("spec") or {}
    secret = secrets.build(
        name=spec["secretName"],
        owner=owner,
        chain=chain,
        root=root,
        key=key,
        key_encoding=str((spec.get("privateKey") or {}).get("encoding") or "PKCS8"),
        template=spec.get("secretTemplate"),
        existing_metadata=state.metadata if state.exists else None,
    )
    await secretwriter.write(deps.kube, secret, state)
