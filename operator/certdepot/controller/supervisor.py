"""One reconcile task per object, driven by watch events.

kopf's daemons and timers put a finalizer on every object they serve, so deleting a
CertificateDownload would hang while the operator is down or gone (cert-manager has no
such finalizer either). Watch events need none: the supervisor starts a loop when an
object appears, wakes it when its generation changes (not on our own status patches) or a
renewal is requested (:mod:`renewrequest`'s annotation), and cancels it when the object is
deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certdepot.controller import loop
from certdepot.controller.core import renewrequest
from certdepot.controller.deps import Step
from certdepot.controller.kube.api import lean_copy
from certdepot.controller.runtime import Runtime
from certdepot.controller.steps import run_step

Reconcile = Callable[[Mapping[str, Any]], Awaitable[Step]]


class _Stop:
    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


@dataclass
class _Entry:
    body: dict[str, Any]
    task: asyncio.Task[None]
    stop: _Stop
    generation: Any
    renewal_request: str | None = None


@dataclass
class Supervisor:
    runtime: Runtime
    entries: dict[str, _Entry] = field(default_factory=dict)

    def observe(
        self, kind: str, event_type: str | None, body: Mapping[str, Any], reconcile: Reconcile
    ) -> None:
        meta = body.get("metadata") or {}
        key = loop.key_of(kind, meta.get("namespace"), str(meta.get("name")))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.forget(key, kind, meta)
            return
        entry = self.entries.get(key)
        if entry is not None and (
            entry.task.done() or entry.body["metadata"].get("uid") != meta.get("uid")
        ):
            self.forget(key, kind, meta)  # recreated under the same name, or the loop died
            entry = None
        if entry is None:
            stop = _Stop()
            holder: dict[str, Any] = lean_copy(body)

            async def step() -> float:
                return await run_step(kind, self.entries[key].body, self.runtime, reconcile)

            task = asyncio.create_task(
                loop.run(key, step, self.runtime.wakeups, stop), name=f"reconcile {key}"
            )
            self.entries[key] = _Entry(
                holder, task, stop, meta.get("generation"), renewrequest.requested(meta)
            )
            # Seen but not reconciled yet: Ready is Unknown until its first step reports.
            self.runtime.deps.metrics.observe(
                kind, str(meta.get("namespace") or ""), str(meta.get("name")), ready=None
            )
            return
        entry.body = lean_copy(body)
        request = renewrequest.requested(meta)
        if meta.get("generation") != entry.generation or request != entry.renewal_request:
            entry.generation = meta.get("generation")
            entry.renewal_request = request
            self.runtime.wakeups.wake(key)

    def forget(self, key: str, kind: str, meta: Mapping[str, Any]) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            entry.stop.set = True
            entry.task.cancel()
            # What the operator remembered about that object (deps.memory is keyed by uid,
            # else name) goes with it; kept, it grew with every object ever seen.
            old = entry.body.get("metadata") or {}
            self.runtime.deps.memories.pop(str(old.get("uid") or old.get("name")), None)
            self._forget_consumer(key, kind, meta)
        self.runtime.deps.metrics.forget(
            kind, str(meta.get("namespace") or ""), str(meta.get("name"))
        )

    def _forget_consumer(self, key: str, kind: str, meta: Mapping[str, Any]) -> None:
        """Its certificate's renewalInfo poll and its name in downloads go with it."""
        deps = self.runtime.deps
        if deps.renewals is not None:
            deps.renewals.forget(key)
        forget = getattr(deps.gateway, "forget_resource", None)
        if callable(forget):
            forget(f"{meta.get('namespace') or ''}/{meta.get('name')}")

    async def stop_all(self) -> None:
        entries = list(self.entries.values())
        self.entries.clear()
        for entry in entries:
            entry.stop.set = True
            entry.task.cancel()
        for entry in entries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
