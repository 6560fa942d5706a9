"""The ``examples/`` manifests, as the demo applies them.

The examples are written for a real installation (a repository at depot.example.com, an
EAB key id to fill in). The demo applies exactly those files and changes only what its own
environment decides: the repository's URL, the CA bundle of its self-signed HTTPS
certificate and the EAB key id minted for the demo tenant.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certdepot.controller.kinds import ingress

GROUP = "certdepot.io"
REPOSITORY_KINDS = ("ClusterCertificateRepository", "CertificateRepository")
CERTIFICATE_KINDS = ("CertificateDownload", "DelegatedCertificate")
PLURALS = {
    "ClusterCertificateRepository": "clustercertificaterepositories",
    "CertificateRepository": "certificaterepositories",
    "CertificateDownload": "certificatedownloads",
    "DelegatedCertificate": "delegatedcertificates",
    "RepositoryCertificate": "repositorycertificates",
    "RepositoryTenant": "repositorytenants",
}
#: Declared on the repository's own cluster (examples/central-repository).
CENTRAL_KINDS = ("RepositoryCertificate", "RepositoryTenant")


def examples_dir() -> Path:
    """``examples/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "examples"


def central_dir(examples: Path) -> Path:
    """The central-repository examples (declared while the demo runs)."""
    return examples / "central-repository"


def load(directory: Path) -> list[dict[str, Any]]:
    """Every document of every ``*.yaml`` file in ``directory``, in file-name order."""
    docs: list[dict[str, Any]] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no *.yaml manifests in {directory}")
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append(doc)
    return docs


@dataclass(frozen=True)
class Repository:
    """What the demo's repository looks like to a cluster."""

    directory_url: str
    ca_pem: bytes
    eab_kid: str
    # The issuer RepositoryCertificates name (the demo's, local CA or Pebble).
    issuer: str | None = None


def customise(docs: Iterable[dict[str, Any]], repo: Repository) -> list[dict[str, Any]]:
    """Copies of ``docs`` pointing every repository resource at the demo's repository."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc.get("kind") in REPOSITORY_KINDS:
            spec = doc.setdefault("spec", {})
            spec["url"] = repo.directory_url
            spec["caBundle"] = base64.b64encode(repo.ca_pem).decode()
            spec.setdefault("externalAccountBinding", {})["keyID"] = repo.eab_kid
        elif doc.get("kind") == "RepositoryCertificate" and repo.issuer is not None:
            doc.setdefault("spec", {})["issuer"] = repo.issuer
        out.append(doc)
    return out


def eab_secret_refs(docs: Iterable[Mapping[str, Any]], cluster_namespace: str
                    ) -> list[tuple[str, str, str]]:
    """(namespace, name, key) of every EAB Secret the repository resources refer to."""
    refs = []
    for doc in docs:
        if doc.get("kind") not in REPOSITORY_KINDS:
            continue
        ref = ((doc.get("spec") or {}).get("externalAccountBinding") or {}).get("keySecretRef")
        if not ref:
            continue
        namespace = (cluster_namespace if doc["kind"] == "ClusterCertificateRepository"
                     else doc["metadata"].get("namespace", "default"))
        refs.append((namespace, ref["name"], ref.get("key") or "secret"))
    return refs


@dataclass(frozen=True)
class Expected:
    """A certdepot resource the demo waits for (created by a manifest or by the shim)."""

    kind: str
    name: str
    namespace: str | None
    dns_names: tuple[str, ...] = ()
    secret_name: str | None = None
    via: str = ""  # e.g. "Ingress demo/shop" for shim-created downloads

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    @property
    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


def expected(docs: Iterable[dict[str, Any]]) -> list[Expected]:
    """Every certdepot resource that should become Ready once ``docs`` are applied."""
    out: list[Expected] = []
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        if kind in PLURALS:
            out.append(Expected(
                kind=str(kind), name=meta["name"], namespace=meta.get("namespace"),
                dns_names=tuple(spec.get("dnsNames") or ()),
                secret_name=spec.get("secretName")))
        elif kind == "Ingress":
            for body in ingress.desired_downloads(doc):
                m, s = body["metadata"], body["spec"]
                out.append(Expected(
                    kind="CertificateDownload", name=m["name"], namespace=m["namespace"],
                    dns_names=tuple(s["dnsNames"]), secret_name=s["secretName"],
                    via=f"Ingress {meta.get('namespace')}/{meta.get('name')}"))
    # Repositories first: everything else waits for them.
    return sorted(out, key=lambda e: e.kind not in REPOSITORY_KINDS + CENTRAL_KINDS)
