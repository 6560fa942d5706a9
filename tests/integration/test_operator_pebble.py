"""The whole chain with a real CA: Pebble issues to the repository over ACME, the operator
downloads (CertificateDownload) or gets a delegated certificate (DelegatedCertificate),
and a real TLS server serving the Secret is verified against Pebble's root."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from repository_harness import RepoProcess, base_config
from test_operator_support import (
    OperatorProcess,
    apply,
    get,
    namespace,
    repository_and_operator,
    secret_files,
    tls_handshake,
    wait_condition,
)

from certdepot.acme import crypto
from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pebble import PebbleEnv

NS = "pebble-path"


@dataclass
class Setup:
    kube: KubeEnv
    repo: RepoProcess
    pebble_root: Path
    workdir: Path
    op: OperatorProcess


@pytest.fixture(scope="module")
def setup(
    kube: KubeEnv,
    crds_applied: list[str],
    pebble_eab: PebbleEnv,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    pebble = pebble_eab
    workdir = tmp_path_factory.mktemp("operator-pebble")
    root = workdir / "pebble-root.pem"
    root.write_text(pebble.roots_pem())
    kid, hmac = next(iter(pebble.eab.items()))
    port = procs.free_port()
    shortlived = f"{PebbleEnv.SHORTLIVED_SECONDS}s"
    cfg = base_config(
        workdir,
        port,
        listeners={
            "https": {
                "address": f"127.0.0.1:{port}",
                "selfSigned": True,
                "selfSignedCertFile": str(workdir / f"tls-{port}.crt"),
            },
            "http01": {"address": f"127.0.0.1:{pebble.http01_port}"},
        },
        issuers=[
            {
                "name": "pebble",
                "type": "acme",
                "directory": pebble.directory_url,
                "caBundle": str(pebble.ca_path),
                "eab": {"kid": kid, "hmacKey": hmac},
                "maxLifetime": shortlived,
            }
        ],
        certificates=[
            {
                "name": "web",
                "dnsNames": ["web.example.test", "www.example.test"],
                "issuer": "pebble",
            }
        ],
        tenants=[
            {
                "name": "cluster",
                "download": ["web"],
                "delegations": [
                    {
                        "name": "edge",
                        "csrTemplate": P256_TLS_SERVER,
                        "namePatterns": ["cdn-*.example.test"],
                        "maxLifetime": "7d",
                        "issuer": "pebble",
                        "profile": "shortlived",
                    }
                ],
            }
        ],
    )
    repository = {"name": "depot", "namespace": NS, "secret_name": "depot-eab"}
    with repository_and_operator(
        kube,
        workdir,
        cfg,
        port,
        tenant="cluster",
        namespaces=[namespace("certdepot"), namespace(NS)],
        repository=repository,
        operator_name="operator-pebble",
    ) as (repo, op):
        yield Setup(kube, repo, root, workdir, op)


def test_download_of_a_pebble_certificate(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        {
            "apiVersion": "certdepot.io/v1alpha1",
            "kind": "CertificateDownload",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "repositoryRef": {"name": "depot"},
                "dnsNames": ["www.example.test", "web.example.test"],
                "secretName": "web-tls",
            },
        },
    )
    # The repository first has to obtain it from Pebble: allow for that.
    wait_condition(
        s.kube, "certificatedownload", "web", NS, status="True", proc=s.op.proc, timeout=180
    )
    secret = get(s.kube, "secret", "web-tls", NS)
    assert secret is not None
    assert "ca.crt" not in secret["data"]  # Pebble's chain ends at an intermediate
    crt, key = secret_files(secret, s.workdir)
    tls_handshake(crt, key, s.pebble_root, "web.example.test")


def test_delegated_certificate_from_pebble(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        {
            "apiVersion": "certdepot.io/v1alpha1",
            "kind": "DelegatedCertificate",
            "metadata": {"name": "cdn-eu", "namespace": NS},
            "spec": {
                "repositoryRef": {"name": "depot"},
                "delegation": "edge",
                "dnsNames": ["cdn-eu.example.test"],
                "secretName": "cdn-eu-tls",
            },
        },
    )
    obj = wait_condition(
        s.kube, "delegatedcertificate", "cdn-eu", NS, status="True", proc=s.op.proc, timeout=180
    )
    secret = get(s.kube, "secret", "cdn-eu-tls", NS)
    assert secret is not None
    crt, key = secret_files(secret, s.workdir)
    tls_handshake(crt, key, s.pebble_root, "cdn-eu.example.test")
    leaf = crypto.parse_pem_chain(crt.read_bytes())[0]
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert life.total_seconds() <= PebbleEnv.SHORTLIVED_SECONDS + 60  # the shortlived profile
    assert obj["status"]["renewalTime"] < obj["status"]["notAfter"]
