"""cert-manager's controller (out of cluster, against the test kube-apiserver) using the
repository as an ACME Issuer with EAB: issuance, the Secret, renewal, and a refused name
whose reason reaches the Certificate's status."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acme_clients import repository_root, verify_chain
from repository_harness import RepoProcess, base_config, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.certmanager import (
    CertManagerEnv,
    acme_issuer,
    certificate,
    condition,
    eab_secret,
)
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.provision import ProvisionError

NS = "cm-acme"
ISSUER = "certdepot"
NAMES = ["web.cm.example.test", "*.cm.example.test"]
# What the repository says when a name is outside the tenant's policy (orders.py).
POLICY_REASON = "the tenant's policy does not allow these names"
Repo = tuple[Path, RepoProcess, tuple[str, str]]  # work directory, process, EAB (kid, hmac)


@pytest.fixture(scope="module")
def cert_manager(kube: KubeEnv) -> Iterator[CertManagerEnv]:
    env = CertManagerEnv(kube)
    try:
        env.start()
    except ProvisionError as exc:
        pytest.fail(f"cert-manager: {exc}", pytrace=False)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    workdir = tmp_path_factory.mktemp("cm-repo")
    port = procs.free_port()
    cfg = base_config(workdir, port,
                      issuers=[{"name": "local", "type": "local-ca", "lifetime": "36h"}],
                      defaultIssuer="local",
                      tenants=[{"name": "team-cm", "issue": ["*.cm.example.test"]}])
    path = write_config(workdir, cfg)
    eab = create_tenant(workdir, path, "team-cm")
    with running(workdir, path, port) as process:
        yield workdir, process, eab


def _ready(obj: dict[str, Any]) -> bool:
    cond = condition(obj, "Ready")
    return cond is not None and cond["status"] == "True"


def _secret_chain(cm: CertManagerEnv, name: str) -> tuple[bytes, bytes]:
    secret = cm.get("secret", NS, name)
    assert secret is not None, f"Secret {NS}/{name} was not written"
    data = secret["data"]
    return base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])


def test_cert_manager_issues_renews_and_reports_refusals(
    cert_manager: CertManagerEnv, repo: Repo
) -> None:
    workdir, process, (kid, hmac) = repo
    cm = cert_manager
    cm.kube.kubectl("create", "namespace", NS, check=False)
    cm.apply(eab_secret(NS, "repo-eab", hmac),
             acme_issuer(NS, ISSUER, server=process.directory_url,
                         ca_pem=process.ca_path.read_bytes(), eab_kid=kid,
                         eab_secret_name="repo-eab"))
    cm.wait_for("issuer", NS, ISSUER, _ready, what="Ready (EAB account registered)")

    started = time.monotonic()
    cm.apply(certificate(NS, "web", NAMES, issuer=ISSUER))
    cm.wait_for("certificate", NS, "web", _ready, what="Ready")
    ready_after = time.monotonic() - started
    chain_pem, key_pem = _secret_chain(cm, "web-tls")
    leaf = crypto.parse_pem_chain(chain_pem)[0]
    assert sorted(crypto.certificate_dns_names(leaf)) == sorted(NAMES)
    assert crypto.public_key_matches(crypto.load_private_key(key_pem), leaf)
    root = repository_root(workdir)
    verify_chain(chain_pem, root, workdir)
    print(f"cert-manager: Certificate Ready {ready_after:.2f}s after it was created")

    # Renewal as `cmctl renew` asks for it; revision 2 is the renewed certificate.
    cm.trigger_renewal(NS, "web")
    cm.wait_for("certificate", NS, "web",
                lambda c: _ready(c) and c["status"].get("revision") == 2,
                what="renewed (revision 2, Ready)")
    renewed_pem, renewed_key = _secret_chain(cm, "web-tls")
    renewed = crypto.parse_pem_chain(renewed_pem)[0]
    assert crypto.serial_hex(renewed) != crypto.serial_hex(leaf), "the Secret was not renewed"
    assert crypto.public_key_matches(crypto.load_private_key(renewed_key), renewed)
    verify_chain(renewed_pem, root, workdir)

    cm.apply(certificate(NS, "outside", ["www.other.example.test"], issuer=ISSUER))
    refused = cm.wait_for(
        "certificate", NS, "outside",
        lambda c: POLICY_REASON in (condition(c, "Issuing") or {}).get("message", ""),
        what="showing the repository's refusal")
    message = condition(refused, "Issuing") or {}
    assert message.get("status") == "False", message
    assert "rejectedIdentifier" in message.get("message", ""), message
    # The per-name subproblem comes through too.
    assert "www.other.example.test] not allowed for this tenant" in message["message"], message
    assert not _ready(refused)
    assert cm.get("secret", NS, "outside-tls") is None
