"""Creating many certdepot resources and seeing each become Ready, with one watch.

A watch (rather than polling) keeps the benchmark's own load on the API server to one
LIST and a few WATCH requests, and gives each resource's Ready time to the millisecond.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.apimetrics import Key

GROUP, VERSION = "certdepot.io", "v1alpha1"
RUN_LABEL = "bench.certdepot.io/run"

ItemKey = tuple[str, str]  # namespace, name


def is_ready(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class ReadyWatch:
    """Watches ``plural`` objects labelled with ``run``; records when each is first Ready."""

    api: Any
    plural: str
    run: str
    expected: set[ItemKey]
    timeout: float
    ready_at: dict[ItemKey, float] = field(default_factory=dict)
    own: Counter[Key] = field(default_factory=Counter)
    error: BaseException | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    objects: dict[ItemKey, Mapping[str, Any]] = field(default_factory=dict)
    # cert-manager's Certificates are watched the same way (cert-manager.io, v1).
    group: str = GROUP
    version: str = VERSION

    def start(self) -> ReadyWatch:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.plural}",
                                        daemon=True)
        self._thread.start()
        return self

    def _seen(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        self.objects[key] = obj
        if key not in self.ready_at and is_ready(obj):
            self.ready_at[key] = time.monotonic()

    def _complete(self) -> bool:
        return self.expected <= set(self.ready_at)

    def _run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        custom: Any = client.CustomObjectsApi(self.api)
        deadline = time.monotonic() + self.timeout
        selector = f"{RUN_LABEL}={self.run}"

        def relist() -> str:
            listing = custom.list_cluster_custom_object(self.group, self.version, self.plural,
                                                        label_selector=selector)
            self.own[("LIST", self.plural, "")] += 1
            for obj in listing.get("items", []):
                self._seen(obj)
            return str(listing["metadata"]["resourceVersion"])

        try:
            version = relist()
            while not self._complete() and time.monotonic() < deadline:
                w: Any = watch.Watch()  # type: ignore[no-untyped-call]
                self.own[("WATCH", self.plural, "")] += 1
                remaining = max(1, int(deadline - time.monotonic()))
                try:
                    for event in w.stream(custom.list_cluster_custom_object, self.group,
                                          self.version, self.plural, label_selector=selector,
                                          resource_version=version,
                                          timeout_seconds=min(remaining, 60)):
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        self._seen(obj)
                        if self._complete():
                            w.stop()
                            break
                except ApiException as exc:
                    # 410 Gone: the watch fell behind etcd's compaction; list afresh.
                    if exc.status != 410:
                        raise
                    version = relist()
        except BaseException as exc:  # reported by wait()
            self.error = exc
        finally:
            self._done.set()

    def wait(self, check_alive: Callable[[], None] = lambda: None) -> None:
        while not self._done.wait(0.5):
            check_alive()
        if self.error is not None:
            raise self.error
        missing = self.expected - set(self.ready_at)
        if missing:
            sample = sorted(missing)[:5]
            states = [((self.objects.get(k) or {}).get("status") or {}).get("conditions")
                      for k in sample]
            raise TimeoutError(f"{len(missing)} of {len(self.expected)} {self.plural} not "
                               f"Ready after {self.timeout:.0f}s; e.g. {sample}: {states}")


def create_all(api: Any, plural: str, bodies: Iterable[dict[str, Any]],
               threads: int = 4, group: str = GROUP, version: str = VERSION
               ) -> dict[ItemKey, float]:
    """Create every body (namespaced custom objects); returns when each create was sent."""
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(api)
    sent: dict[ItemKey, float] = {}

    def create(body: dict[str, Any]) -> None:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        sent[(ns, name)] = time.monotonic()
        custom.create_namespaced_custom_object(group, version, ns, plural, body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, bodies))
    return sent


def create_namespaces(api: Any, names: Iterable[str],
                      labels: Mapping[str, str] | None = None) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    for name in names:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": name, "labels": dict(labels or {})}})
