"""From a repositoryRef to a usable :class:`Endpoint`, enforcing the namespace rules."""

from __future__ import annotations

import base64
import time
import weakref
from collections.abc import Mapping
from typing import Any

from certdepot.acme import crypto
from certdepot.controller import access
from certdepot.controller.core.errors import (
    ReconcileError,
    RepositoryNotAllowed,
    RepositoryNotReady,
)
from certdepot.controller.core.settings import Settings
from certdepot.controller.core.status import get_condition
from certdepot.controller.gateway import Endpoint
from certdepot.controller.kubeapi import KubeApi
from certdepot.controller.watchcache import WatchCache

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
    they have delivered them (see watchcache), else from a GET."""
    kind = ref.get("kind") or access.NAMESPACED_KIND
    name = str(ref.get("name") or "")
    repo_ns = namespace if kind == access.NAMESPACED_KIND else None
    repo = await _repository(kube, cache, kind, repo_ns, name, fresh=False)
    if cache is not None and repo is not None and not _ready(repo):
        # Its Ready status may be patched and not yet delivered by the watch: ask.
        repo = await _repository(kube, cache, kind, repo_ns, name, fresh=True)
    labels: dict[str, str] = {}
    if kind != access.NAMESPACED_KIND and repo is not None:
        labels = (
            await cache.namespace_labels(kube, namespace)
            if cache is not None
            else await kube.namespace_labels(namespace)
        )
    why = access.check_access(
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
    key_secret = await kube.get_secret(secret_ns, secret_name)
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
