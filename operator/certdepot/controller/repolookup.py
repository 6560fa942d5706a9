"""From a repositoryRef to a usable :class:`Endpoint`, enforcing the namespace rules."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from certdepot.controller import access, tlsdata
from certdepot.controller.conditions import get_condition
from certdepot.controller.errors import ReconcileError, RepositoryNotAllowed, RepositoryNotReady
from certdepot.controller.gateway import Endpoint
from certdepot.controller.kubeapi import KubeApi
from certdepot.controller.settings import Settings

ACCOUNT_KEY_FIELD = "account.key"


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
    kube: KubeApi, ref: Mapping[str, Any], namespace: str, settings: Settings
) -> Endpoint:
    """The repository ``ref`` names, if ``namespace`` may use it and it is ready."""
    kind = ref.get("kind") or access.NAMESPACED_KIND
    name = str(ref.get("name") or "")
    if kind == access.NAMESPACED_KIND:
        repo = await kube.get_custom(kind, namespace, name)
        labels: dict[str, str] = {}
    else:
        repo = await kube.get_custom(kind, None, name)
        labels = await kube.namespace_labels(namespace) if repo is not None else {}
    why = access.check_access(
        ref=ref, namespace=namespace, repository=repo, namespace_labels=labels
    )
    if repo is None:
        raise ReconcileError("RepositoryNotFound", why, permanent=False)
    if why:
        raise RepositoryNotAllowed(why)
    status = repo.get("status") or {}
    cond = get_condition(status.get("conditions"), "Ready")
    if not cond or cond.get("status") != "True" or not status.get("accountURL"):
        detail = f": {cond.get('message')}" if cond and cond.get("message") else ""
        raise RepositoryNotReady(f"{kind} {name!r} is not ready{detail}")
    key_secret = await kube.get_secret(
        repository_namespace(repo, settings), str(status.get("accountKeySecretName") or "")
    )
    if key_secret is None:
        raise RepositoryNotReady(f"{kind} {name!r}: account key Secret not found")
    key_b64 = (key_secret.get("data") or {}).get(ACCOUNT_KEY_FIELD, "")
    try:
        key = tlsdata.load_key(base64.b64decode(key_b64))
    except (ValueError, TypeError):
        raise RepositoryNotReady(f"{kind} {name!r}: account key Secret is unreadable") from None
    spec = repo.get("spec") or {}
    return Endpoint(
        directory_url=str(spec.get("url")),
        account_key=key,
        ca_pem=ca_bundle(spec),
        account_url=str(status.get("accountURL")),
    )
