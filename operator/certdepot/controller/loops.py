"""One reconcile loop per object: the loops, the supervisor that starts, wakes and stops them,
the step each runs, and the :class:`Runtime` kopf hands to every handler as ``memo``.

A *step* is one pass of an object's loop: reconcile the freshest view of the object, write
its status, and wait the delay the reconcile returned (or until woken). Woken by a change of
spec, an event of its Secret, a renewal request or its own timer.

kopf's daemons and timers put a finalizer on every object they serve, so deleting a
CertificateDownload would hang while the operator is down or gone (cert-manager has no
such finalizer either). Watch events need none: the supervisor starts a loop when an
object appears, wakes it when its generation changes (not on our own status patches) or a
renewal is requested (:mod:`.core.renewrequest`'s annotation), and cancels it when the object
is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certdepot.controller.core import renewrequest
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.kube.api import lean_copy

log = logging.getLogger("certdepot.operator")

Reconcile = Callable[[Mapping[str, Any]], Awaitable[Step]]


# --- the loops -----------------------------------------------------------------------------------


class _Waker:
    """One object's wake-up flag, and the future its loop sleeps on, if it sleeps."""

    __slots__ = ("waiter", "woken")

    def __init__(self) -> None:
        self.woken = False
        self.waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self.woken

    def set(self) -> None:
        self.woken = True
        _settle(self.waiter)


def _settle(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Wakeups:
    """Named wake-up flags; a key is "<Kind>/<namespace>/<name>"."""

    def __init__(self) -> None:
        self._events: dict[str, _Waker] = {}

    def event(self, key: str) -> _Waker:
        waker = self._events.get(key)
        if waker is None:
            waker = self._events[key] = _Waker()
        return waker

    def wake(self, key: str) -> None:
        if key in self._events:
            self._events[key].set()

    def wake_kind(self, *kinds: str) -> None:
        for key, event in self._events.items():
            if key.split("/", 1)[0] in kinds:
                event.set()

    def forget(self, key: str) -> None:
        self._events.pop(key, None)

    async def sleep(self, key: str, seconds: float, stopped: Any) -> None:
        """Sleep up to ``seconds``; return early when woken. Not at all once ``stopped``.

        Whoever sets ``stopped`` also cancels the loop's task (Supervisor.forget and
        stop_all), which ends the wait: no polling. Waking every sleeping loop once a second
        to look at the flag cost CPU in proportion to the objects (1,000 timers a second at
        1,000 CertificateDownloads). A sleep is one future and one timer: an asyncio.Event
        under wait_for was a task, a coroutine and an Event more per sleeping object (memory
        at N=10,000)."""
        waker = self.event(key)
        if stopped or seconds <= 0:
            return
        if not waker.woken:
            loop = asyncio.get_running_loop()
            waiter = waker.waiter = loop.create_future()
            timer = loop.call_later(seconds, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                waker.waiter = None
        waker.woken = False


async def run(
    key: str, step: Callable[[], Awaitable[float]], wakeups: Wakeups, stopped: Any
) -> None:
    wakeups.event(key)
    failures = 0
    try:
        while not stopped:
            try:
                delay = await step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Reconcilers turn their errors into status; what gets here is the API server
                # refusing the status patch itself. Keep the loop alive and try again.
                failures += 1
                delay = min(60.0, 2.0**failures)
                log.warning(
                    "%s: step failed (%s: %s); retry in %.0fs", key, type(exc).__name__, exc, delay
                )
            await wakeups.sleep(key, delay, stopped)
    finally:
        wakeups.forget(key)


def key_of(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace or ''}/{name}"


# --- one step ------------------------------------------------------------------------------------


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


# --- the supervisor and the runtime --------------------------------------------------------------


class _Stop:
    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


@dataclass(slots=True)  # one per object: no __dict__
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
        key = key_of(kind, meta.get("namespace"), str(meta.get("name")))
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
                # At most runtime.step_slots steps at once: in a rollout of N objects each
                # step holds its copy of the object, its certificate and key, and its
                # requests while it waits for a connection to the repository; unbounded,
                # N of them were the operator's peak memory. The body is the freshest
                # one when the turn comes.
                async with self.runtime.step_slots:
                    return await run_step(kind, self.entries[key].body, self.runtime, reconcile)

            task = asyncio.create_task(
                run(key, step, self.runtime.wakeups, stop), name=f"reconcile {key}"
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
        self._caught_up(entry.body)
        request = renewrequest.requested(meta)
        if meta.get("generation") != entry.generation or request != entry.renewal_request:
            entry.generation = meta.get("generation")
            entry.renewal_request = request
            self.runtime.wakeups.wake(key)

    def _caught_up(self, body: Mapping[str, Any]) -> None:
        """The watch delivered the status we last wrote: the copy kept to overlay it until
        then (run_step) is no longer needed; it was a second status per object."""
        meta = body.get("metadata") or {}
        memory = self.runtime.deps.memories.get(str(meta.get("uid") or meta.get("name")))
        if memory is None or not memory.status:
            return
        status = body.get("status") or {}
        if all(status.get(k) == v for k, v in memory.status.items()):
            memory.status = {}

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


@dataclass
class Runtime:
    """The operator's shared state, handed to kopf handlers as ``memo``.

    kopf copies the memo per object, shallowly; here a copy is the same instance."""

    deps: Deps
    wakeups: Wakeups = field(default_factory=Wakeups)
    supervisor: Supervisor = field(init=False, repr=False, compare=False)
    # Ingresses the shim has seen annotated (namespace/name): one whose annotation was
    # removed is synced once more, to delete its CertificateDownloads.
    shimmed_ingresses: set[str] = field(default_factory=set)
    # Steps running at once (--max-concurrent-steps); see run_step.
    step_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(256))

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self)

    def __copy__(self) -> Runtime:
        # kopf copies the memo for every object it sees (each CertificateDownload and each
        # certdepot Secret): nothing here is per object, so one shared instance does.
        return self
