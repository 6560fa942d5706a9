"""CertificateDownload: one reconcile step, from the object to a Secret and a status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certdepot.acme import crypto
from certdepot.controller import certstep, decisions, loop, ready
from certdepot.controller.core import certinfo
from certdepot.controller.core.errors import ReconcileError, SecretConflict
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.durations import optional_duration
from certdepot.controller.gateway.model import Endpoint, RenewalWindow
from certdepot.controller.kube import secrets

KIND = "CertificateDownload"
log = logging.getLogger("certdepot.operator")


async def reconcile(body: Mapping[str, Any], deps: Deps) -> Step:
    """Bring the Secret in line with the spec; never raises (errors become status)."""
    return await certstep.run(body, deps, KIND, lambda start: _step(start, deps))


async def _step(start: certstep.Start, deps: Deps) -> Step:
    body, spec, state, now = start.body, start.spec, start.state, start.now
    wake_key = loop.key_of(KIND, start.owner.namespace, start.owner.name)
    window = await _renewal_window(deps, start.memory, start.endpoint, state, now, wake_key)
    decision = decisions.decide(
        dns_names=spec.get("dnsNames") or [],
        renew_before=optional_duration(spec.get("renewBefore")),
        state=state,
        status=start.status,
        generation=start.meta.get("generation"),
        adopt=bool(spec.get("adoptExistingSecret")),
        now=now,
        window=window,
        recheck=deps.settings.recheck,
        renewal_requested=start.renewal_request is not None,
    )
    if decision.conflict:
        raise SecretConflict(decision.message)
    if decision.fetch:
        return await _fetch(body, deps, start.memory, start.endpoint, state, decision, now)
    return await ready.up_to_date(body, deps, start.memory, start.owner, state, decision, now)


async def _renewal_window(
    deps: Deps,
    memory: Memory,
    endpoint: Endpoint,
    state: secrets.SecretState,
    now: datetime,
    wake_key: str,
) -> RenewalWindow | None:
    """Ask ARI at most every renewal_info_interval; an ARI failure never blocks a reconcile."""
    if not state.ours or state.bundle is None or state.info is None:
        return None
    if deps.renewals is not None:
        # Polled once per certificate on the repository's schedule (renewalwatch), which
        # wakes this object when the answer says "renew now".
        memory.window = deps.renewals.watch(wake_key, endpoint, state.bundle.chain[0])
        return memory.window
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
    memory: Memory,
    endpoint: Endpoint,
    state: secrets.SecretState,
    decision: decisions.Decision,
    now: datetime,
) -> Step:
    spec = body.get("spec") or {}
    owner = secrets.owner_of(body, KIND)
    names = list(spec.get("dnsNames") or [])
    # Our own serial asks for a download begun after this call, never a shared older one.
    current = state.info.serial if state.info is not None else None
    result = await deps.gateway.download(
        endpoint, names, current, resource=f"{owner.namespace}/{owner.name}"
    )
    chain, root = crypto.separate_root(crypto.parse_pem_chain(result.chain_pem))
    leaf = certinfo.cert_info(chain[0])
    if not crypto.public_key_matches(result.key, chain[0]):
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
        memory.window = None
    elif deps.renewals is not None:
        # Follow the new certificate's renewal information from now on (a second rotation
        # soon after the first must reach this object too).
        deps.renewals.watch(loop.key_of(KIND, owner.namespace, owner.name), endpoint, chain[0])
    # Replaced in one update (never deleted first): consumers never see it empty.
    await secrets.write_bundle(deps.kube, body, owner, state, chain, root, result.key)
    renew_before = optional_duration(spec.get("renewBefore"))
    renew_at = decisions.renewal_time(renew_before, leaf.not_before, leaf.not_after)
    message = (
        f"certificate {leaf.serial} written to Secret {spec['secretName']} ({decision.reason})"
    )
    reason = "Downloaded"
    revoked = memory.window.revoked if memory.window is not None else None
    if revoked and current is not None and leaf.serial != current:
        # The repository rotated the certificate (a leaked key, say): say so, with why.
        reason = "Rotated"
        message = (
            f"certificate {current} was revoked by the repository ({revoked}); "
            f"certificate {leaf.serial} written to Secret {spec['secretName']}"
        )
    new_status = ready.new_certificate(
        body,
        deps,
        owner,
        leaf=leaf,
        renew_at=renew_at,
        reason=reason,
        fetch_reason=decision.reason,
        message=message,
        now=now,
        extra={"certificateURL": result.certificate_url or None},
    )
    log.info("%s %s/%s: %s", KIND, owner.namespace, owner.name, message)
    memory.last_warning = ""
    return Step(new_status, ready.wait_until(renew_at, now, deps.settings.recheck))
