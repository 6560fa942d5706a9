"""DelegatedCertificate end to end: the key is made by the operator and never leaves the
cluster; the repository issues through an RFC 9115 delegation; STAR auto-renewal is followed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from repository_harness import base_config
from test_operator_support import (
    Setup,
    apply,
    get,
    local_ca_issuer,
    namespace,
    repository_and_operator,
    secret_files,
    tls_handshake,
    wait_condition,
    wait_for,
)

from certdepot.acme import crypto
from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv

NAMESPACE = "cdn"


@pytest.fixture(scope="module")
def setup(
    kube: KubeEnv,
    crds_applied: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("operator-delegated")
    root, issuer = local_ca_issuer(workdir, "delegation-root")
    port = procs.free_port()
    cfg = base_config(
        workdir,
        port,
        starMinLifetime="2s",
        issuers=[issuer],
        tenants=[
            {
                "name": "cdn",
                "delegations": [
                    {
                        "name": "edge",
                        "csrTemplate": P256_TLS_SERVER,
                        "namePatterns": ["cdn-*.example.test"],
                        "maxLifetime": "12h",
                        "issuer": "local",
                    },
                    {
                        "name": "star",
                        "csrTemplate": P256_TLS_SERVER,
                        "namePatterns": ["star-*.example.test"],
                        "maxLifetime": "1h",
                        "issuer": "local",
                    },
                ],
            }
        ],
    )
    repository = {"name": "depot", "namespace": NAMESPACE, "secret_name": "depot-eab"}
    with repository_and_operator(
        kube,
        workdir,
        cfg,
        port,
        tenant="cdn",
        namespaces=[namespace("certdepot"), namespace(NAMESPACE)],
        repository=repository,
        operator_name="operator-delegated",
    ) as (repo, op):
        yield Setup(kube, repo, root, workdir, op)


def delegated(
    name: str, delegation: str, names: list[str], secret: str, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "DelegatedCertificate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "repositoryRef": {"name": "depot"},
            "delegation": delegation,
            "dnsNames": names,
            "secretName": secret,
            **spec,
        },
    }


def leaf_of(secret: dict[str, Any]) -> Any:
    return crypto.parse_pem_chain(base64.b64decode(secret["data"]["tls.crt"]))[0]


def test_repository_lists_the_delegations(setup: Setup) -> None:
    obj = wait_condition(
        setup.kube, "certificaterepository", "depot", NAMESPACE, status="True", proc=setup.op.proc
    )
    assert obj["status"]["directory"]["delegationEnabled"] is True
    assert {u.rsplit("/", 1)[-1] for u in obj["status"]["delegations"]} == {"edge", "star"}


def test_delegated_certificate_is_served_by_a_real_tls_server(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        delegated(
            "edge-eu",
            "edge",
            ["cdn-eu.example.test"],
            "edge-eu-tls",
            duration="6h",
            privateKey={"rotationPolicy": "Never"},
        ),
    )
    obj = wait_condition(
        s.kube, "delegatedcertificate", "edge-eu", NAMESPACE, status="True", proc=s.op.proc
    )
    secret = get(s.kube, "secret", "edge-eu-tls", NAMESPACE)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    assert b"BEGIN EC PRIVATE KEY" in key_pem  # default encoding PKCS1 for ECDSA P-256
    crt, key = secret_files(secret, s.workdir)
    peer = tls_handshake(crt, key, s.root.cert_path, "cdn-eu.example.test")
    assert ("DNS", "cdn-eu.example.test") in peer["subjectAltName"]
    status = obj["status"]
    assert status["delegationURL"].endswith("/edge")
    assert status["privateKeyFingerprint"] and "PRIVATE" not in str(status)
    leaf = leaf_of(secret)
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() <= 12 * 3600


def test_name_outside_the_delegation_is_refused(setup: Setup) -> None:
    s = setup
    apply(s.kube, delegated("stray", "edge", ["www.example.test"], "stray-tls"))
    obj = wait_condition(
        s.kube, "delegatedcertificate", "stray", NAMESPACE, status="False", proc=s.op.proc
    )
    assert obj["status"]["conditions"][0]["reason"] in {"RejectedIdentifier", "BadCSR"}
    assert get(s.kube, "secret", "stray-tls", NAMESPACE) is None


def test_key_type_outside_the_template_is_refused_before_ordering(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        delegated(
            "rsa",
            "edge",
            ["cdn-rsa.example.test"],
            "rsa-tls",
            privateKey={"algorithm": "RSA", "size": 2048},
        ),
    )
    obj = wait_condition(
        s.kube,
        "delegatedcertificate",
        "rsa",
        NAMESPACE,
        status="False",
        reason="BadCSR",
        proc=s.op.proc,
    )
    assert "template" in obj["status"]["conditions"][0]["message"]


def test_unknown_delegation(setup: Setup) -> None:
    s = setup
    apply(s.kube, delegated("nope", "does-not-exist", ["cdn-x.example.test"], "nope-tls"))
    wait_condition(
        s.kube,
        "delegatedcertificate",
        "nope",
        NAMESPACE,
        status="False",
        reason="UnknownDelegation",
        proc=s.op.proc,
    )


def test_auto_renewed_certificate_is_followed(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        delegated(
            "star-1",
            "star",
            ["star-1.example.test"],
            "star-1-tls",
            autoRenewal={"enabled": True, "lifetime": "20s"},
        ),
    )
    wait_condition(
        s.kube, "delegatedcertificate", "star-1", NAMESPACE, status="True", proc=s.op.proc
    )
    first = get(s.kube, "secret", "star-1-tls", NAMESPACE)
    assert first is not None
    serial = leaf_of(first).serial_number
    key_before = first["data"]["tls.key"]

    def renewed() -> dict[str, Any] | None:
        now = get(s.kube, "secret", "star-1-tls", NAMESPACE)
        return now if now and leaf_of(now).serial_number != serial else None

    later = wait_for(
        "the auto-renewed certificate in the Secret", renewed, timeout=60, proc=s.op.proc
    )
    assert later["data"]["tls.key"] == key_before  # STAR keeps the key: same CSR
    crt, key = secret_files(later, s.workdir)
    tls_handshake(crt, key, s.root.cert_path, "star-1.example.test")
