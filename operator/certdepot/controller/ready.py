"""A step of a Secret-producing kind that ends Ready: the certificate kept, or a new one written.

The counterpart of :mod:`failures`; CertificateDownload and DelegatedCertificate differ in how
they get a certificate, not in how they report having one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller import decisions
from certdepot.controller.core import certinfo
from certdepot.controller.core import status as status_doc
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.kube import secrets


def wait_until(moment: datetime, now: datetime, recheck: timedelta) -> float:
    """Seconds to the next step: at ``moment``, but at least every ``recheck`` (and >= 1 s)."""
    return max(1.0, min((moment - now).total_seconds(), recheck.total_seconds()))


async def up_to_date(
    body: Mapping[str, Any],
    deps: Deps,
    memory: Memory,
    owner: secrets.Owner,
    state: secrets.SecretState,
    decision: decisions.Decision,
    now: datetime,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Step:
    """The Secret's certificate stays; its Secret is put right first if it was altered."""
    spec = body.get("spec") or {}
    assert state.bundle is not None and state.info is not None  # decide() guarantees it
    if decision.rewrite:
        bundle = state.bundle
        await secrets.write_bundle(
            deps.kube, body, owner, state, bundle.chain, bundle.root, bundle.key
        )
    deps.metrics.observe(
        owner.kind,
        owner.namespace,
        owner.name,
        ready=True,
        not_after=state.info.not_after,
        renewal=decision.renewal_time,
    )
    memory.last_warning = ""
    new_status = status_doc.ready(
        body.get("status") or {},
        info=state.info,
        renewal_time=decision.renewal_time,
        reason="UpToDate",
        message=f"Secret {spec['secretName']} holds certificate {state.info.serial}",
        now=now,
        generation=(body.get("metadata") or {}).get("generation"),
        extra=extra,
    )
    delay = (decision.next_check - now).total_seconds() if decision.next_check else 60.0
    return Step(new_status, max(1.0, delay))


def new_certificate(
    body: Mapping[str, Any],
    deps: Deps,
    owner: secrets.Owner,
    *,
    leaf: certinfo.CertInfo,
    renew_at: datetime,
    reason: str,
    fetch_reason: str,
    message: str,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Report a certificate just written to the Secret: an Event, metrics, the new status."""
    deps.events(body, "Normal", reason, message)
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
        body.get("status") or {},
        info=leaf,
        renewal_time=renew_at,
        reason=reason,
        message=message,
        now=now,
        generation=(body.get("metadata") or {}).get("generation"),
        extra=extra,
    )
