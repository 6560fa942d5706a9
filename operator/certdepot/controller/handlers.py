"""kopf registrations only: each handler hands over to a plain function and returns.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from certdepot.controller import delegated, download, ingress, loop, repository
from certdepot.controller.resources import (
    CLUSTER_REPOSITORIES,
    DELEGATED,
    DOWNLOADS,
    GROUP,
    REPOSITORIES,
    VERSION,
)
from certdepot.controller.runtime import Runtime
from certdepot.controller.secrets import MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION
from certdepot.controller.steps import run_step

SECRET_KINDS = ("CertificateDownload", "DelegatedCertificate")


# --- login -----------------------------------------------------------------------------------


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own parsers: in-cluster service account first, then $KUBECONFIG.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# --- repositories -----------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, REPOSITORIES, cancellation_timeout=5.0)
async def repository_daemon(body: kopf.Body, memo: Runtime, stopped: Any, **_: Any) -> None:
    await _daemon(
        "CertificateRepository",
        body,
        memo,
        stopped,
        lambda b: repository.reconcile(b, "CertificateRepository", memo.deps),
    )


@kopf.daemon(GROUP, VERSION, CLUSTER_REPOSITORIES, cancellation_timeout=5.0)
async def cluster_repository_daemon(body: kopf.Body, memo: Runtime, stopped: Any, **_: Any) -> None:
    await _daemon(
        "ClusterCertificateRepository",
        body,
        memo,
        stopped,
        lambda b: repository.reconcile(b, "ClusterCertificateRepository", memo.deps),
    )


# --- certificates -----------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, DOWNLOADS, cancellation_timeout=5.0)
async def download_daemon(body: kopf.Body, memo: Runtime, stopped: Any, **_: Any) -> None:
    await _daemon(
        "CertificateDownload", body, memo, stopped, lambda b: download.reconcile(b, memo.deps)
    )


@kopf.daemon(GROUP, VERSION, DELEGATED, cancellation_timeout=5.0)
async def delegated_daemon(body: kopf.Body, memo: Runtime, stopped: Any, **_: Any) -> None:
    await _daemon(
        "DelegatedCertificate", body, memo, stopped, lambda b: delegated.reconcile(b, memo.deps)
    )


@kopf.on.update(GROUP, VERSION, REPOSITORIES, field="spec")
@kopf.on.update(GROUP, VERSION, CLUSTER_REPOSITORIES, field="spec")
@kopf.on.update(GROUP, VERSION, DOWNLOADS, field="spec")
@kopf.on.update(GROUP, VERSION, DELEGATED, field="spec")
async def spec_changed(body: kopf.Body, memo: Runtime, **_: Any) -> None:
    memo.wakeups.wake(loop.key_of(str(body["kind"]), body.metadata.namespace, body.metadata.name))


@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def managed_secret_event(
    event: Mapping[str, Any], body: kopf.Body, memo: Runtime, **_: Any
) -> None:
    # A deleted or edited Secret wakes its owner, which puts it back.
    owner = (body.metadata.annotations or {}).get(OWNER_ANNOTATION, "")
    if owner.split("/", 1)[0] in SECRET_KINDS and event.get("type") in ("DELETED", "MODIFIED"):
        memo.wakeups.wake(owner)


# --- ingress shim -----------------------------------------------------------------------------


def _annotated(annotations: Mapping[str, str], **_: Any) -> bool:
    return ingress.is_annotated(annotations)


@kopf.on.resume("networking.k8s.io", "v1", "ingresses", when=_annotated)
@kopf.on.create("networking.k8s.io", "v1", "ingresses", when=_annotated)
@kopf.on.update("networking.k8s.io", "v1", "ingresses", when=_annotated)
async def ingress_changed(body: kopf.Body, memo: Runtime, **_: Any) -> None:
    for warning in await ingress.sync(body, memo.deps.kube):
        memo.deps.events(body, "Warning", "CertificateDownloadConflict", warning)


# --- shared -----------------------------------------------------------------------------------


async def _daemon(kind: str, body: kopf.Body, memo: Runtime, stopped: Any, reconcile: Any) -> None:
    key = loop.key_of(kind, body.metadata.namespace, body.metadata.name)
    await loop.run(key, lambda: run_step(kind, body, memo, reconcile), memo.wakeups, stopped)
    memo.deps.metrics.forget(kind, body.metadata.namespace or "", body.metadata.name or "")
