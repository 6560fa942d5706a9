"""The repository configuration the demo runs with (see docs/operations.md for the schema).

Two managed certificates (one fetched by a CertificateDownload, one by the annotated
Ingress), one tenant for the demo cluster that may download both and use the ``cdn``
delegation for ``cdn-*.demo.example`` with a one-day maximum lifetime. The names match the
manifests in ``examples/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.repository.config import parse_config

TENANT = "demo-cluster"
NAMESPACE = "certdepot"  # the repository's resources; also the operator's own namespace
DELEGATION = "cdn"
DELEGATION_PATTERN = "cdn-*.demo.example"
DELEGATION_MAX_LIFETIME = "1d"
CERTIFICATES = {
    "www": ["www.demo.example", "demo.example"],
    "shop": ["shop.demo.example"],
}



@dataclass(frozen=True)
class Upstream:
    """Pebble as the repository's upstream CA (``--upstream pebble``)."""

    directory_url: str
    ca_bundle: Path
    http01_port: int
    # Pebble picks a random profile for orders that name none: always name one.
    profile: str
    # A Pebble profile whose lifetime is at most the delegation's maximum.
    short_profile: str
    short_lifetime_seconds: int


def managed_issuer(pebble: bool) -> str:
    """The issuer of the managed certificates (and of RepositoryCertificates)."""
    return "pebble" if pebble else "local-ca"


def build(workdir: Path, port: int, upstream: Upstream | None = None,
          kubeconfig: Path | None = None) -> dict[str, Any]:
    """The configuration as a mapping (validated with the repository's own schema). With
    ``kubeconfig`` the repository also follows RepositoryCertificate and RepositoryTenant
    resources in the namespace certdepot (examples/central-repository)."""
    listeners: dict[str, Any] = {
        "https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                  "selfSignedCertFile": str(tls_cert_path(workdir))},
    }
    if upstream is None:
        issuers: list[dict[str, Any]] = [
            {"name": "local-ca", "type": "local-ca", "commonName": "certdepot demo local CA",
             "lifetime": "90d"},
        ]
        managed = delegation_issuer = managed_issuer(False)
    else:
        # Pebble validates http-01 by connecting to this port on 127.0.0.1, where the
        # repository serves the tokens of its own upstream orders.
        listeners["http01"] = {"address": f"127.0.0.1:{upstream.http01_port}"}
        common = {"type": "acme", "directory": upstream.directory_url,
                  "caBundle": str(upstream.ca_bundle), "challenge": {"type": "http-01"}}
        issuers = [
            {"name": "pebble", **common, "profile": upstream.profile},
            {"name": "pebble-short", **common, "profile": upstream.short_profile,
             "maxLifetime": f"{upstream.short_lifetime_seconds}s"},
        ]
        managed, delegation_issuer = managed_issuer(True), "pebble-short"
    config: dict[str, Any] = {
        "baseUrl": f"https://127.0.0.1:{port}",
        "listeners": listeners,
        "storage": {"url": f"sqlite:///{workdir / 'repository.db'}"},
        "keyEncryptionKey": {"file": str(kek_path(workdir))},
        "eabRequired": True,
        # Managed certificates are obtained by the renewal loop: look often so the demo
        # does not wait for them.
        "renewCheckInterval": "1s",
        "issuers": issuers,
        "defaultIssuer": managed,
        "certificates": [
            {"name": name, "dnsNames": names, "issuer": managed}
            for name, names in CERTIFICATES.items()
        ],
        "tenants": [{
            "name": TENANT,
            "download": list(CERTIFICATES),
            "delegations": [{
                "name": DELEGATION,
                "csrTemplate": P256_TLS_SERVER,
                "namePatterns": [DELEGATION_PATTERN],
                "maxLifetime": DELEGATION_MAX_LIFETIME,
                "issuer": delegation_issuer,
            }],
        }],
    }
    if kubeconfig is not None:
        config["kubernetes"] = {"resources": True, "namespace": NAMESPACE,
                                "kubeconfig": str(kubeconfig), "resyncInterval": "2s"}
    parse_config(config, "demo repository configuration")
    return config


def tls_cert_path(workdir: Path) -> Path:
    """Where the repository writes its self-signed HTTPS certificate (the caBundle)."""
    return workdir / "repository-https.crt"


def kek_path(workdir: Path) -> Path:
    """The key that encrypts private keys in the store. A file (0600) rather than an
    environment variable so that, with ``--keep``, admin commands such as
    ``certdepot repository inventory`` work on the demo's repository as they are."""
    return workdir / "repository.kek"


def write(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "repository.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
