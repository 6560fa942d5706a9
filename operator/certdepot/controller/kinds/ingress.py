"""Ingress shim: an annotated Ingress gets one CertificateDownload per spec.tls entry.

Annotations:
  certdepot.io/repository: <name>          a CertificateRepository in the Ingress's namespace
  certdepot.io/cluster-repository: <name>  a ClusterCertificateRepository
  certdepot.io/renew-before: <duration>    optional, copied to spec.renewBefore

The CertificateDownloads are owned by the Ingress (garbage-collected with it); entries
dropped from spec.tls, or the annotation removed, delete the ones the Ingress owns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certdepot.controller.core.resources import API_VERSION

REPOSITORY_ANNOTATION = "certdepot.io/repository"
CLUSTER_REPOSITORY_ANNOTATION = "certdepot.io/cluster-repository"
RENEW_BEFORE_ANNOTATION = "certdepot.io/renew-before"
INGRESS_LABEL = "certdepot.io/ingress"


def is_annotated(annotations: Mapping[str, str]) -> bool:
    return bool(
        annotations.get(REPOSITORY_ANNOTATION) or annotations.get(CLUSTER_REPOSITORY_ANNOTATION)
    )


def desired_downloads(ingress: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CertificateDownload bodies this Ingress asks for (empty when not annotated)."""
    meta = ingress.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if annotations.get(CLUSTER_REPOSITORY_ANNOTATION):
        ref = {
            "kind": "ClusterCertificateRepository",
            "name": annotations[CLUSTER_REPOSITORY_ANNOTATION],
        }
    elif annotations.get(REPOSITORY_ANNOTATION):
        ref = {"kind": "CertificateRepository", "name": annotations[REPOSITORY_ANNOTATION]}
    else:
        return []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for tls in (ingress.get("spec") or {}).get("tls") or []:
        secret_name = tls.get("secretName")
        hosts = sorted({str(h).lower() for h in tls.get("hosts") or [] if h})
        if not secret_name or not hosts or secret_name in seen:
            continue
        seen.add(secret_name)
        spec: dict[str, Any] = {
            "repositoryRef": dict(ref),
            "dnsNames": hosts,
            "secretName": secret_name,
        }
        if annotations.get(RENEW_BEFORE_ANNOTATION):
            spec["renewBefore"] = annotations[RENEW_BEFORE_ANNOTATION]
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "CertificateDownload",
                "metadata": {
                    "name": secret_name,
                    "namespace": meta.get("namespace"),
                    "labels": {INGRESS_LABEL: str(meta.get("name"))},
                    "ownerReferences": [
                        {
                            "apiVersion": "networking.k8s.io/v1",
                            "kind": "Ingress",
                            "name": meta.get("name"),
                            "uid": meta.get("uid"),
                            "controller": True,
                            "blockOwnerDeletion": False,
                        }
                    ],
                },
                "spec": spec,
            }
        )
    return out


def owned_by(obj: Mapping[str, Any], ingress_uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == ingress_uid and r.get("kind") == "Ingress" for r in refs)


async def sync(ingress: Mapping[str, Any], kube: Any) -> list[str]:
    """Create, update and delete this Ingress's CertificateDownloads; return warnings."""
    meta = ingress.get("metadata") or {}
    namespace, uid = str(meta.get("namespace")), str(meta.get("uid"))
    desired = {d["metadata"]["name"]: d for d in desired_downloads(ingress)}
    existing = {
        o["metadata"]["name"]: o for o in await kube.list_custom("CertificateDownload", namespace)
    }
    warnings: list[str] = []
    for name, body in desired.items():
        current = existing.get(name)
        if current is None:
            await kube.create_custom("CertificateDownload", namespace, body)
        elif not owned_by(current, uid):
            warnings.append(f"CertificateDownload {name} exists and is not owned by this Ingress")
        elif current.get("spec") != body["spec"]:
            updated = dict(current)
            updated["spec"] = body["spec"]
            await kube.replace_custom("CertificateDownload", namespace, updated)
    for name, current in existing.items():
        if name not in desired and owned_by(current, uid):
            await kube.delete_custom("CertificateDownload", namespace, name)
    return warnings
