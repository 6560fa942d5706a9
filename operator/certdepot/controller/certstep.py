"""How a step of a Secret-producing kind begins and how its errors end.

CertificateDownload and DelegatedCertificate both read their Secret and resolve their
repository before deciding anything, and both turn every error into status (see
:mod:`failures`); only what they do in between differs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certdepot.controller import failures
from certdepot.controller.core import renewrequest
from certdepot.controller.deps import Deps, Memory, Step
from certdepot.controller.gateway.model import Endpoint
from certdepot.controller.kube import lookup, secrets


@dataclass(frozen=True)
class Start:
    """What the step knows once its Secret is read and its repository resolved."""

    body: Mapping[str, Any]
    now: datetime
    meta: Mapping[str, Any]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    owner: secrets.Owner
    memory: Memory
    state: secrets.SecretState
    endpoint: Endpoint
    # A `kubectl certdepot renew` request not yet honoured (see renewrequest).
    renewal_request: str | None = None


async def run(
    body: Mapping[str, Any], deps: Deps, kind: str, act: Callable[[Start], Awaitable[Step]]
) -> Step:
    """Read the Secret, resolve the repository, then ``act``; never raises."""
    now = deps.clock()
    spec = body.get("spec") or {}
    owner = secrets.owner_of(body, kind)
    memory = deps.memory(owner.uid or owner.ref)
    state: secrets.SecretState | None = None
    try:
        state = secrets.inspect(
            await deps.kube.get_secret(owner.namespace, spec["secretName"]), owner
        )
        endpoint = await lookup.resolve(
            deps.kube,
            spec.get("repositoryRef") or {},
            owner.namespace,
            deps.settings,
            deps.objects,
        )
        start = Start(
            body=body,
            now=now,
            meta=body.get("metadata") or {},
            spec=spec,
            status=body.get("status") or {},
            owner=owner,
            memory=memory,
            state=state,
            endpoint=endpoint,
            renewal_request=renewrequest.pending(
                body.get("metadata") or {}, body.get("status") or {}
            ),
        )
        step = await act(start)
        return Step(renewrequest.record(step.status, start.renewal_request), step.delay)
    except Exception as error:
        return failures.failure(body, deps, memory, error, state, now, kind)
