"""From a repositoryRef to a usable :class:`Endpoint`, enforcing the namespace rules
(pure functions), with repository objects and namespace labels as the watches last
delivered them (:class:`WatchCache`).

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

import base64
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from certdepot.acme import crypto
from certdepot.controller.core.errors import (
    ReconcileError,
    RepositoryNotAllowed,
    RepositoryNotReady,
)
from certdepot.controller.core.settings import Settings
from certdepot.controller.core.status import get_condition
from certdepot.controller.gateway.model import Endpoint
from certdepot.controller.gateway.sharing import SharedCalls
from certdepot.controller.kube.api import KubeApi, lean_copy

NAMESPACED_KIND = "CertificateRepository"


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an absent or empty selector matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = set(expr.get("values") or ())
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            return False  # unknown operator: deny rather than guess
    return True


def check_access(
    *,
    ref: Mapping[str, Any],
    namespace: str,
    repository: Mapping[str, Any] | None,
    namespace_labels: Mapping[str, str],
) -> str:
    """Return "" when the resource in ``namespace`` may use ``repository``, else why not.

    ``repository`` is the repository object as fetched for ``ref`` (None: not found). A
    CertificateRepository is looked up in the resource's own namespace only, so a reference
    can never reach another namespace's repository; this function re-checks it anyway.
    """
    kind = ref.get("kind") or NAMESPACED_KIND
    name = ref.get("name", "")
    if repository is None:
        where = f" in namespace {namespace}" if kind == NAMESPACED_KIND else ""
        return f"{kind} {name!r} not found{where}"
    if kind == NAMESPACED_KIND:
        if (repository.get("metadata") or {}).get("namespace") != namespace:
            return f"{kind} {name!r} is in another namespace"
        return ""
    selector = (repository.get("spec") or {}).get("namespaceSelector")
    if not selector_matches(selector, namespace_labels):
        return f"{kind} {name!r} does not admit namespace {namespace} (namespaceSelector)"
    return ""


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


ACCOUNT_KEY_FIELD = "account.key"

# Every CertificateDownload reconcile needs its repository's account key. Reading that
# Secret once per reconcile was one of four API GETs per certificate. A parsed key is
# reused while the repository object is unchanged (same uid and resourceVersion, so a new
# accountKeySecretName or status is a miss) and for at most KEY_CACHE_SECONDS, which bounds
# how long a key replaced in place (same Secret name) goes unnoticed. One map per API
# client, so separate clients (tests, several clusters) never share keys.
KEY_CACHE_SECONDS = 30.0
_CacheKey = tuple[str, str, str, str]
_Cache = dict[_CacheKey, tuple[float, crypto.PrivateKey]]
_key_cache: weakref.WeakKeyDictionary[KubeApi, _Cache] = weakref.WeakKeyDictionary()
_key_reads: SharedCalls[dict[str, Any] | None] = SharedCalls(0.0)  # GETs in flight


def repository_namespace(repo: Mapping[str, Any], settings: Settings) -> str:
    """Where a repository's Secrets live: its own namespace, or the cluster resource namespace."""
    ns = (repo.get("metadata") or {}).get("namespace")
    return str(ns) if ns else settings.cluster_resource_namespace


def ca_bundle(spec: Mapping[str, Any]) -> bytes | None:
    raw = spec.get("caBundle")
    if not raw:
        return None
    try:
        return base64.b64decode(raw)
    except ValueError:
        raise ReconcileError("InvalidCABundle", "caBundle is not base64") from None


async def resolve(
    kube: KubeApi,
    ref: Mapping[str, Any],
    namespace: str,
    settings: Settings,
    cache: WatchCache | None = None,
) -> Endpoint:
    """The repository ``ref`` names, if ``namespace`` may use it and it is ready.

    With ``cache`` the repository object and namespace labels come from the watches when
    they have delivered them (see WatchCache), else from a GET."""
    kind = ref.get("kind") or NAMESPACED_KIND
    name = str(ref.get("name") or "")
    repo_ns = namespace if kind == NAMESPACED_KIND else None
    repo = await _repository(kube, cache, kind, repo_ns, name, fresh=False)
    if cache is not None and repo is not None and not _ready(repo):
        # Its Ready status may be patched and not yet delivered by the watch: ask.
        repo = await _repository(kube, cache, kind, repo_ns, name, fresh=True)
    labels: dict[str, str] = {}
    if kind != NAMESPACED_KIND and repo is not None:
        labels = (
            await cache.namespace_labels(kube, namespace)
            if cache is not None
            else await kube.namespace_labels(namespace)
        )
    why = check_access(
        ref=ref, namespace=namespace, repository=repo, namespace_labels=labels
    )
    if repo is None:
        raise ReconcileError("RepositoryNotFound", why, permanent=False)
    if why:
        raise RepositoryNotAllowed(why)
    status = repo.get("status") or {}
    cond = get_condition(status.get("conditions"), "Ready")
    if not _ready(repo):
        detail = f": {cond.get('message')}" if cond and cond.get("message") else ""
        raise RepositoryNotReady(f"{kind} {name!r} is not ready{detail}")
    key = await _account_key(kube, repo, settings, f"{kind} {name!r}")
    spec = repo.get("spec") or {}
    return Endpoint(
        directory_url=str(spec.get("url")),
        account_key=key,
        ca_pem=ca_bundle(spec),
        account_url=str(status.get("accountURL")),
    )


def _ready(repo: Mapping[str, Any]) -> bool:
    status = repo.get("status") or {}
    cond = get_condition(status.get("conditions"), "Ready")
    return bool(cond and cond.get("status") == "True" and status.get("accountURL"))


async def _repository(
    kube: KubeApi,
    cache: WatchCache | None,
    kind: str,
    namespace: str | None,
    name: str,
    *,
    fresh: bool,
) -> dict[str, Any] | None:
    if cache is None:
        return await kube.get_custom(kind, namespace, name)
    return await cache.repository(kube, kind, namespace, name, fresh=fresh)


async def _account_key(
    kube: KubeApi, repo: Mapping[str, Any], settings: Settings, what: str
) -> crypto.PrivateKey:
    meta = repo.get("metadata") or {}
    secret_ns = repository_namespace(repo, settings)
    secret_name = str((repo.get("status") or {}).get("accountKeySecretName") or "")
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    cache = _cache_for(kube)
    cache_key = (str(uid), str(version), secret_ns, secret_name)
    now = time.monotonic()
    if cache is not None and uid and version:
        hit = cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
    # Concurrent misses share one GET: at a rollout's start every queued reconcile misses
    # at once (at N=10,000 half of them each read the same Secret: 0.49 GETs/certificate).
    key_secret = await _key_reads.call(
        (id(kube), secret_ns, secret_name), lambda: kube.get_secret(secret_ns, secret_name)
    )
    if key_secret is None:
        raise RepositoryNotReady(f"{what}: account key Secret not found")
    key_b64 = (key_secret.get("data") or {}).get(ACCOUNT_KEY_FIELD, "")
    try:
        key = crypto.load_private_key(base64.b64decode(key_b64))
    except (ValueError, TypeError):
        raise RepositoryNotReady(f"{what}: account key Secret is unreadable") from None
    if cache is not None and uid and version:
        for stale in [k for k, (expires, _) in cache.items() if expires <= now]:
            del cache[stale]
        cache[cache_key] = (now + KEY_CACHE_SECONDS, key)
    return key


def _cache_for(kube: KubeApi) -> _Cache | None:
    try:
        return _key_cache.setdefault(kube, {})
    except TypeError:  # an API object that can't be weakly referenced: no caching
        return None
