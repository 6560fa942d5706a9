"""CertificateDownload: one reconcile step, from the object to a Secret and a status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller import decisions, failures, repolookup, secrets, secretwriter, tlsdata
from certdepot.controller import status as status_doc
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.durations import parse_duration
from certdepot.controller.errors import ReconcileError, SecretConflict
from certdepot.controller.gateway import Endpoint

KIND = "CertificateDownload"
log = logging.getLogger("certdepot.operator")


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
    owner = secrets.owner_of(body, KIND)
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
            await secretwriter.write_bundle(
                deps.kube,
                body,
                owner,
                state,
                state.bundle.chain,
                state.bundle.root,
                state.bundle.key,
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
        return failures.failure(body, deps, memory, error, state, now, KIND)


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
    owner = secrets.owner_of(body, KIND)
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
    await secretwriter.write_bundle(deps.kube, body, owner, state, chain, root, result.key)
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
