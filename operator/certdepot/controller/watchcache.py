"""Namespace labels and repository objects, as the operator's watches last delivered them.

Every CertificateDownload reconcile needs its repository object and, for a
ClusterCertificateRepository, its namespace's labels (the namespaceSelector check). Reading
both with a GET per reconcile was two of three API reads per certificate, for objects that
rarely change and that the operator watches anyway. Here the watch handlers keep the
latest copy and lookups read it.

- A miss (nothing delivered yet, an entry past ``max_age``) is a GET, whose answer is kept
  unless a watch event for that object arrived meanwhile (the event is newer). The reconcile
  loops run outside kopf's handlers and may start before the first events arrive.
- Entries are dropped after ``max_age`` even without events: a DELETED event lost to a
  watch restart can keep a gone object for at most that long.
- What a lookup returns may be the cached object itself: callers must not change it.
- Callers that find a repository not ready ask again with ``fresh=True`` (a GET): the
  repository's own reconcile wakes waiting certificates right after its status patch,
  possibly before the watch delivers that status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from certdepot.controller.coalesce import SharedCalls
from certdepot.controller.kubeapi import KubeApi, lean_copy

_Key = tuple[str, str, str]  # (kind, namespace or "", name); kind "Namespace" for labels


class WatchCache:
    def __init__(
        self, *, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._events: dict[Hashable, int] = {}  # watch events seen per key
        self._gets: SharedCalls[Any] = SharedCalls(0.0)  # GETs in flight per key

    def __len__(self) -> int:
        return len(self._entries)

    # --- fed by the watch handlers ---------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a (Cluster)CertificateRepository or a Namespace."""
        meta = body.get("metadata") or {}
        key: _Key = (kind, str(meta.get("namespace") or ""), str(meta.get("name")))
        self._events[key] = self._events.get(key, 0) + 1
        if event_type == "DELETED":
            # The event count stays: a GET begun before the deletion must not refill it.
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock(), self._value(kind, body))

    @staticmethod
    def _value(kind: str, body: Mapping[str, Any]) -> Any:
        if kind == "Namespace":
            return dict((body.get("metadata") or {}).get("labels") or {})
        return lean_copy(body)

    # --- read by the reconcilers -----------------------------------------------------------

    async def repository(
        self, kube: KubeApi, kind: str, namespace: str | None, name: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        key: _Key = (kind, namespace or "", name)
        if not fresh:
            hit = self._hit(key)
            if hit is not None:
                # Shared, not copied (a copy per reconcile was ~2% of the operator's CPU):
                # callers only read it.
                shared: dict[str, Any] = hit
                return shared
            obj: dict[str, Any] | None = await self._get_once(
                key, lambda: kube.get_custom(kind, namespace, name), lean_copy
            )
            return obj
        seen = self._events.get(key, 0)
        fresh_obj = await kube.get_custom(kind, namespace, name)
        if fresh_obj is not None:
            self._fill(key, seen, lean_copy(fresh_obj))
        return fresh_obj

    async def namespace_labels(self, kube: KubeApi, name: str) -> dict[str, str]:
        key: _Key = ("Namespace", "", name)
        hit = self._hit(key)
        if hit is not None:
            return dict(hit)
        labels: dict[str, str] = await self._get_once(
            key, lambda: kube.namespace_labels(name), dict
        )
        return dict(labels)

    async def _get_once(
        self, key: _Key, fetch: Callable[[], Awaitable[Any]], keep: Callable[[Any], Any]
    ) -> Any:
        """One GET for all concurrent misses of ``key``. When an entry expires while
        thousands of reconciles are queued (a large rollout), each of them would otherwise
        miss and send its own GET before the first answer comes back."""

        seen = self._events.get(key, 0)  # now: the call (if it starts one) starts later

        async def get_and_fill() -> Any:
            value = await fetch()
            if value is not None:
                self._fill(key, seen, keep(value))
            return value

        return await self._gets.call(key, get_and_fill)

    def _hit(self, key: _Key) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] >= self._max_age:
            del self._entries[key]
            return None
        return entry[1]

    def _fill(self, key: _Key, seen: int, value: Any) -> None:
        # A watch event during the GET carries a state at least as new as the GET's answer.
        if self._events.get(key, 0) == seen:
            self._entries[key] = (self._clock(), value)
