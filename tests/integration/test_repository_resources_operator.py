"""A tenant's EAB Secret, copied to another cluster with one command, connects that
cluster's operator to the repository (issue 20, item 3).

Two real API servers: the central cluster runs the repository (namespace certdepot), which
writes the RepositoryTenant's credentials to a Secret; the consumer cluster runs the
operator (cluster resource namespace certdepot). The Secret travels exactly as
docs/operations.md says (``kubectl get secret -o yaml | kubectl apply -f -``), a
ClusterCertificateRepository names it, and a CertificateDownload becomes a Ready TLS
Secret holding the RepositoryCertificate the repository obtained."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from repository_harness import base_config, running, write_config
from test_operator_support import (
    apply,
    get,
    local_ca_issuer,
    namespace,
    operator,
    secret_files,
    tls_handshake,
    wait_condition,
)

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv

ROOT = Path(__file__).resolve().parents[2]
NS = "certdepot"  # the repository's namespace there, the operator's here
NAMES = ["portal.central.test"]


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    """The repository's own cluster (the session's API server plays the consumer)."""
    env = KubeEnv(tmp_path_factory.mktemp("central-kube"))
    env.start()
    try:
        env.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        env.wait_for_crds(["repositorycertificates.certdepot.io",
                           "repositorytenants.certdepot.io"])
        env.kubectl("create", "namespace", NS)
        yield env
    finally:
        env.stop()


def test_the_copied_secret_connects_the_consumer_cluster(
        kube: KubeEnv, crds_applied: list[str], central: KubeEnv, tmp_path: Path) -> None:
    root, issuer = local_ca_issuer(tmp_path, "central-root")
    port = procs.free_port()
    cfg = base_config(tmp_path, port, configReloadInterval="1s", issuers=[issuer],
                      kubernetes={"resources": True, "namespace": NS,
                                  "kubeconfig": str(central.kubeconfig), "resyncInterval": "2s"})
    path = write_config(tmp_path, cfg)
    apply(kube, namespace(NS, {}), namespace("portal", {"team": "portal"}))
    with running(tmp_path, path, port) as repo:
        apply(central, {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryCertificate",
            "metadata": {"name": "portal", "namespace": NS},
            "spec": {"dnsNames": NAMES, "issuer": "local", "allowedTenants": ["consumer-1"]},
        }, {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryTenant",
            "metadata": {"name": "consumer-1", "namespace": NS}, "spec": {},
        })
        tenant = wait_condition(central, "repositorytenant", "consumer-1", NS, status="True",
                                proc=repo.proc)
        key_id = tenant["status"]["eab"]["keyID"]
        # The documented move: one pipe from one cluster to the other.
        exported = central.kubectl("get", "secret", "consumer-1-eab", "-n", NS,
                                   "-o", "yaml").stdout
        kube.kubectl("apply", "-f", "-", input=exported)
        assert base64.b64decode(get(kube, "secret", "consumer-1-eab", NS)["data"]["keyID"]
                                ).decode() == key_id  # type: ignore[index]
        apply(kube, {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "ClusterCertificateRepository",
            "metadata": {"name": "central-e2e"},
            "spec": {"url": repo.directory_url,
                     "caBundle": base64.b64encode(repo.ca_path.read_bytes()).decode(),
                     "namespaceSelector": {"matchLabels": {"team": "portal"}},
                     "externalAccountBinding": {"keyID": key_id,
                                                "keySecretRef": {"name": "consumer-1-eab"}}},
        }, {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
            "metadata": {"name": "portal", "namespace": "portal"},
            "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository",
                                       "name": "central-e2e"},
                     "dnsNames": NAMES, "secretName": "portal-tls"},
        })
        try:
            with operator(kube, tmp_path, name="consumer-operator") as op:
                wait_condition(kube, "certificatedownload", "portal", "portal", status="True",
                               proc=op.proc, timeout=90)
            secret = get(kube, "secret", "portal-tls", "portal")
            assert secret is not None
            crt, key = secret_files(secret, tmp_path)
            seen = tls_handshake(crt, key, root.cert_path, NAMES[0])
            assert seen
            held = wait_condition(central, "repositorycertificate", "portal", NS,
                                  status="True", proc=repo.proc)
            leaf = crypto.load_certificate(crt.read_bytes())
            assert held["status"]["serial"] == crypto.serial_hex(leaf)
        finally:
            kube.kubectl("delete", "certificatedownload", "portal", "-n", "portal",
                         "--wait=false", check=False)
            kube.kubectl("delete", "clustercertificaterepository", "central-e2e",
                         "--wait=false", check=False)
