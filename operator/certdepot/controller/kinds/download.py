"""CertificateDownload: one reconcile step, from the object to a Secret and a status.

Forward only: :func:`reconcile` begins the step with :mod:`.certificate`, decides
(:mod:`.decisions`), downloads through the gateway, and ends it with :mod:`.certificate`
again (keep, install, finish, fail); nothing calls back into this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certdepot.acme import crypto
from certdepot.controller.core import certinfo
from certdepot.controller.core.certinfo import Bundle, CertInfo
from certdepot.controller.core.errors import ReconcileError, SecretConflict
from certdepot.controller.gateway.model import Downloaded, RenewalWindow
from certdepot.controller.kinds import certificate, decisions
from certdepot.controller.kinds.certificate import Start
from certdepot.controller.kinds.decisions import optional_duration
from certdepot.controller.kinds.deps import Deps, Step

KIND = "CertificateDownload"
log = logging.getLogger("certdepot.operator")


async def reconcile(body: Mapping[str, Any], deps: Deps) -> Step:
    """Bring the Secret in line with the spec; never raises (errors become status)."""
    start = await certificate.begin(body, deps, KIND)
    if isinstance(start, Step):
        return start  # the Secret or the repository could not be read: the status says why
    try:
        return certificate.finish(start, await _bring_in_line(start, deps))
    except Exception as error:
        return certificate.fail(start, deps, error)


async def _bring_in_line(start: Start, deps: Deps) -> Step:
    spec, state, now = start.spec, start.state, start.now
    window = await _renewal_window(start, deps)
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
        return await _fetch(start, deps, decision)
    return await certificate.up_to_date(start, deps, decision)


async def _renewal_window(start: Start, deps: Deps) -> RenewalWindow | None:
    """Ask ARI at most every renewal_info_interval; an ARI failure never blocks a reconcile."""
    state, memory, now = start.state, start.memory, start.now
    if not state.ours or state.bundle is None or state.info is None:
        return None
    if deps.renewals is not None:
        # Polled once per certificate on the repository's schedule (gateway.sharing), which
        # wakes this object (its wake key is the owner's ref) when the answer says "renew now".
        memory.window = deps.renewals.watch(start.owner.ref, start.endpoint, state.bundle.chain[0])
        return memory.window
    fresh = memory.window_serial == state.info.serial
    due = (
        memory.window_checked_at is None
        or now - memory.window_checked_at >= deps.settings.renewal_info_interval
    )
    if fresh and not due:
        return memory.window
    memory.window_checked_at, memory.window_serial = now, state.info.serial
    try:
        memory.window = await deps.gateway.renewal_window(start.endpoint, state.bundle.chain[0])
    except Exception:
        memory.window = None
    return memory.window


async def _fetch(start: Start, deps: Deps, decision: decisions.Decision) -> Step:
    spec, state, owner, memory, now = start.spec, start.state, start.owner, start.memory, start.now
    names = list(spec.get("dnsNames") or [])
    # Our own serial asks for a download begun after this call, never a shared older one.
    current = state.info.serial if state.info is not None else None
    result = await deps.gateway.download(
        start.endpoint, names, current, resource=f"{owner.namespace}/{owner.name}"
    )
    bundle, leaf = _checked(result, names, now)
    reason, message = _news(start, leaf, current, decision)  # from the window that led here
    if state.info is not None and state.ours and leaf.serial == state.info.serial:
        # The repository has nothing newer: don't ask again for this serial until ARI changes.
        memory.window = None
    elif deps.renewals is not None:
        # Follow the new certificate's renewal information from now on (a second rotation
        # soon after the first must reach this object too), from one interval on: until
        # then the local rule's window holds, and a rollout asks nothing per certificate.
        deps.renewals.watch(owner.ref, start.endpoint, bundle.chain[0], fresh=True)
    else:
        # The same without the shared poll: the first renewalInfo question comes one
        # renewal_info_interval after this download.
        memory.window, memory.window_checked_at, memory.window_serial = None, now, leaf.serial
    renew_at = decisions.renewal_time(
        optional_duration(spec.get("renewBefore")), leaf.not_before, leaf.not_after
    )
    new_status = await certificate.install(
        start,
        deps,
        bundle,
        leaf=leaf,
        renew_at=renew_at,
        reason=reason,
        fetch_reason=decision.reason,
        message=message,
        extra={"certificateURL": result.certificate_url or None},
    )
    log.info("%s %s/%s: %s", KIND, owner.namespace, owner.name, message)
    memory.last_warning = ""
    return Step(new_status, certificate.wait_until(renew_at, now, deps.settings.recheck))


def _checked(result: Downloaded, names: list[str], now: datetime) -> tuple[Bundle, CertInfo]:
    """The download as a bundle, once it is shown to be for the spec's names, unexpired, and
    its key to match."""
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
    return Bundle(chain=chain, root=root, key=result.key), leaf


def _news(
    start: Start, leaf: CertInfo, current: str | None, decision: decisions.Decision
) -> tuple[str, str]:
    """The Event's reason and message for a certificate just downloaded."""
    secret_name = start.spec["secretName"]
    window = start.memory.window
    revoked = window.revoked if window is not None else None
    if revoked and current is not None and leaf.serial != current:
        # The repository rotated the certificate (a leaked key, say): say so, with why.
        return "Rotated", (
            f"certificate {current} was revoked by the repository ({revoked}); "
            f"certificate {leaf.serial} written to Secret {secret_name}"
        )
    return "Downloaded", (
        f"certificate {leaf.serial} written to Secret {secret_name} ({decision.reason})"
    )
