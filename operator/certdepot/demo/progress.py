"""Wait until every expected resource is Ready, saying what each one is doing meanwhile.

Each change of a resource's state (missing, Ready, reason, message) is printed when it
happens, and a one-line heartbeat every few seconds says how many are Ready and what the
others wait for, so a slow step is never a silent pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from certdepot.demo.manifests import GROUP, Expected

VERSION = "v1alpha1"
Echo = Callable[[str], None]
Getter = Callable[[Expected], Mapping[str, Any] | None]


@dataclass(frozen=True)
class State:
    ready: bool
    summary: str  # e.g. "Ready=False Pending: waiting for the repository"


def state_of(obj: Mapping[str, Any] | None) -> State:
    if obj is None:
        return State(False, "not created yet")
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return State(False, "created, not reconciled yet")
    status = str(ready.get("status"))
    reason = ready.get("reason") or ""
    message = " ".join(str(ready.get("message") or "").split())
    if len(message) > 160:
        message = message[:157] + "..."
    text = f"Ready={status}" + (f" {reason}" if reason else "") + (f": {message}"
                                                                     if message else "")
    return State(status == "True", text)


def kube_getter(api_client: Any) -> Getter:
    """Read a resource through the kubernetes client (None when it does not exist)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api_client)

    def get(item: Expected) -> Mapping[str, Any] | None:
        try:
            if item.namespace:
                obj = custom.get_namespaced_custom_object(
                    GROUP, VERSION, item.namespace, item.plural, item.name)
            else:
                obj = custom.get_cluster_custom_object(GROUP, VERSION, item.plural, item.name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    return get


class NotReady(TimeoutError):
    def __init__(self, pending: Mapping[str, State], timeout: float) -> None:
        lines = [f"  {label}: {state.summary}" for label, state in pending.items()]
        super().__init__(f"not Ready after {timeout:.0f}s:\n" + "\n".join(lines))
        self.pending = dict(pending)


def wait_ready(
    items: Sequence[Expected],
    get: Getter,
    *,
    timeout: float,
    echo: Echo,
    interval: float = 0.5,
    heartbeat: float = 5.0,
    check_alive: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Mapping[str, Any]]:
    """Poll until all ``items`` are Ready; returns their final objects by label.

    ``check_alive`` raises if a process the resources depend on has died, so a crash is
    reported at once rather than as a timeout.
    """
    began = clock()
    last: dict[str, State] = {}
    objects: dict[str, Mapping[str, Any]] = {}
    next_beat = began + heartbeat
    width = max(len(i.label) for i in items)
    while True:
        check_alive()
        current: dict[str, State] = {}
        for item in items:
            obj = get(item)
            if obj is not None:
                objects[item.label] = obj
            current[item.label] = state_of(obj)
        now = clock()
        for item in items:
            state = current[item.label]
            if last.get(item.label) != state:
                mark = "+" if state.ready else "."
                via = f" (from {item.via})" if item.via and not last.get(item.label) else ""
                echo(f"   {now - began:5.1f}s {mark} {item.label:{width}}  {state.summary}{via}")
        last = current
        pending = {label: s for label, s in current.items() if not s.ready}
        if not pending:
            return objects
        if now - began > timeout:
            raise NotReady(pending, timeout)
        if now >= next_beat:
            ready = len(items) - len(pending)
            echo(f"   {now - began:5.1f}s   waiting: {ready}/{len(items)} Ready; "
                 f"pending {', '.join(pending)}")
            next_beat = now + heartbeat
        sleep(interval)
