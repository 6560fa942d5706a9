"""kopf registrations only: each handler hands over to a plain function and returns.

Importing this module registers the handlers with kopf's default registry, all but the
ingress-shim, which :func:`register_ingress_shim` adds when it is wanted (without it the
operator never watches Ingresses and needs no RBAC for them). Everything is driven by watch
events (``kopf.on.event``), which need no finalizers and write nothing onto the watched
objects: the operator only ever patches ``status``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from certdepot.controller.core.resources import (
    CLUSTER_REPOSITORIES,
    DELEGATED,
    DOWNLOADS,
    GROUP,
    REPOSITORIES,
    VERSION,
)
from certdepot.controller.kinds import account, delegated, download, ingress
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.kube.secrets import MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION
from certdepot.controller.loops import Runtime

SECRET_KINDS = ("CertificateDownload", "DelegatedCertificate")
# Read by every certificate reconcile: served from the watch (deps.objects).
CACHED_KINDS = ("CertificateRepository", "ClusterCertificateRepository")


# --- login and shutdown ------------------------------------------------------------------------


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own parsers: in-cluster service account first, then $KUBECONFIG.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def stop_loops(memo: Runtime, **_: Any) -> None:
    await memo.supervisor.stop_all()


# --- the four kinds ------------------------------------------------------------------------------


Reconciler = Callable[[Mapping[str, Any], Deps], Awaitable[Step]]
Handler = Callable[..., Awaitable[None]]


def _watch(name: str, plural: str, kind: str, reconcile: Reconciler) -> Handler:
    """Register the watch-event handler of one kind (kopf calls it ``name``): it hands the
    object to its loop."""

    async def on_event(event: Mapping[str, Any], body: kopf.Body, memo: Runtime, **_: Any) -> None:
        if kind in CACHED_KINDS:
            memo.deps.objects.observe(kind, event.get("type"), body)
        memo.supervisor.observe(kind, event.get("type"), body, lambda b: reconcile(b, memo.deps))

    on_event.__name__ = on_event.__qualname__ = name
    kopf.on.event(GROUP, VERSION, plural)(on_event)
    return on_event


repository_event = _watch(
    "repository_event",
    REPOSITORIES,
    "CertificateRepository",
    lambda b, deps: account.reconcile(b, "CertificateRepository", deps),
)
cluster_repository_event = _watch(
    "cluster_repository_event",
    CLUSTER_REPOSITORIES,
    "ClusterCertificateRepository",
    lambda b, deps: account.reconcile(b, "ClusterCertificateRepository", deps),
)
download_event = _watch("download_event", DOWNLOADS, "CertificateDownload", download.reconcile)
delegated_event = _watch("delegated_event", DELEGATED, "DelegatedCertificate", delegated.reconcile)


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(
    event: Mapping[str, Any], body: kopf.Body, memo: Runtime, **_: Any
) -> None:
    # Labels for the namespaceSelector check. Namespaces are cluster-scoped, so kopf
    # watches them cluster-wide even with --namespace.
    memo.deps.objects.observe("Namespace", event.get("type"), body)


@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def managed_secret_event(
    event: Mapping[str, Any], body: kopf.Body, memo: Runtime, **_: Any
) -> None:
    # A deleted or edited Secret wakes its owner, which puts it back.
    owner = (body.metadata.annotations or {}).get(OWNER_ANNOTATION, "")
    if owner.split("/", 1)[0] in SECRET_KINDS and event.get("type") in ("DELETED", "MODIFIED"):
        memo.wakeups.wake(owner)


# --- ingress shim --------------------------------------------------------------------------------


def register_ingress_shim(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event("networking.k8s.io", "v1", "ingresses", registry=registry)(ingress_event)


async def ingress_event(event: Mapping[str, Any], body: kopf.Body, memo: Runtime, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return  # the garbage collector removes the owned CertificateDownloads
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    shimmed = memo.shimmed_ingresses
    if ingress.is_annotated(body.metadata.annotations or {}):
        shimmed.add(key)
    elif key in shimmed:
        shimmed.discard(key)  # the annotation was removed: sync once more to clean up
    else:
        return
    for warning in await ingress.sync(body, memo.deps.kube):
        memo.deps.events(body, "Warning", "CertificateDownloadConflict", warning)
