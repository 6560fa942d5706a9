"""Run one reconcile step for an object and write its status; the glue under the daemons."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from certdepot.controller.deps import Step
from certdepot.controller.runtime import Runtime

_REPOSITORY_KINDS = ("CertificateRepository", "ClusterCertificateRepository")


async def run_step(
    kind: str,
    live_body: Mapping[str, Any],
    runtime: Runtime,
    reconcile: Callable[[Mapping[str, Any]], Awaitable[Step]],
) -> float:
    """Reconcile the freshest view of the object, patch its status, return the delay."""
    body = copy.deepcopy(dict(live_body))
    meta = body.get("metadata") or {}
    memory = runtime.deps.memory(str(meta.get("uid") or meta.get("name")))
    # The watch may not have delivered our previous status patch yet: overlay what we wrote.
    if memory.status:
        body["status"] = {**(body.get("status") or {}), **memory.status}
    step = await reconcile(body)
    await runtime.deps.kube.patch_status(
        kind, meta.get("namespace"), str(meta.get("name")), step.status
    )
    merged = {**(body.get("status") or {}), **step.status}
    memory.status = {k: v for k, v in merged.items() if v is not None}
    if kind in _REPOSITORY_KINDS and step.status.get("accountURL"):
        # Certificates waiting for this repository should not wait out their backoff.
        was = (live_body.get("status") or {}).get("accountURL")
        if was != step.status.get("accountURL"):
            runtime.wakeups.wake_kind("CertificateDownload", "DelegatedCertificate")
    return step.delay
