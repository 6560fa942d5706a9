"""The CRDs in crds/ against the real API server: CEL rules, defaults, explain, columns."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from certdepot.testenv.kube import KubectlError, KubeEnv

NS = "crd-rules"


@pytest.fixture(scope="module")
def namespace(kube: KubeEnv, crds_applied: list[str]) -> str:
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    return NS


def delegated(name: str, **spec: Any) -> dict[str, Any]:
    full = {
        "repositoryRef": {"name": "depot"},
        "delegation": "edge",
        "dnsNames": ["cdn-1.example.test"],
        "secretName": "cdn-1-tls",
        **spec,
    }
    return {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "DelegatedCertificate",
        "metadata": {"name": name, "namespace": NS},
        "spec": full,
    }


def repository(name: str, kind: str = "CertificateRepository", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "CertificateRepository":
        meta["namespace"] = NS
    return {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {"url": "https://depot.example.test/directory", **spec},
    }


def create(kube: KubeEnv, doc: dict[str, Any]) -> dict[str, Any]:
    out = kube.kubectl("create", "-o", "json", "-f", "-", input=yaml.safe_dump(doc)).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def rejected(kube: KubeEnv, doc: dict[str, Any]) -> str:
    with pytest.raises(KubectlError) as info:
        kube.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
    return str(info.value.stderr)


def test_delegated_defaults(kube: KubeEnv, namespace: str) -> None:
    obj = create(kube, delegated("defaults"))
    pk = obj["spec"]["privateKey"]
    assert pk == {"algorithm": "ECDSA", "encoding": "PKCS1", "rotationPolicy": "Always"}
    assert obj["spec"]["repositoryRef"]["kind"] == "CertificateRepository"
    assert obj["spec"]["adoptExistingSecret"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"duration": "24h", "renewBefore": "24h"}, "renewBefore must be shorter than duration"),
        ({"duration": "30m"}, "duration must be at least 1h"),
        ({"privateKey": {"algorithm": "RSA", "size": 1024}}, "size must be"),
        ({"privateKey": {"algorithm": "ECDSA", "size": 2048}}, "size must be"),
        ({"privateKey": {"algorithm": "Ed25519", "size": 256}}, "size must be"),
        ({"privateKey": {"algorithm": "DSA"}}, "spec.privateKey.algorithm"),
        ({"dnsNames": []}, "spec.dnsNames"),
        ({"usages": ["code signing"]}, "spec.usages"),
        (
            {"autoRenewal": {"enabled": True, "lifetime": "2h"}, "duration": "3h"},
            "autoRenewal.lifetime or duration",
        ),
    ],
)
def test_delegated_rules(kube: KubeEnv, namespace: str, spec: dict[str, Any], message: str) -> None:
    assert message in rejected(kube, delegated("bad", **spec))


@pytest.mark.parametrize(
    "private_key",
    [
        {"algorithm": "RSA", "size": 4096},
        {"algorithm": "ECDSA", "size": 384},
        {"algorithm": "Ed25519", "encoding": "PKCS8"},
    ],
)
def test_valid_key_choices(kube: KubeEnv, namespace: str, private_key: dict[str, Any]) -> None:
    name = f"key-{private_key['algorithm'].lower()}"
    create(kube, delegated(name, privateKey=private_key, duration="48h", renewBefore="16h"))


def test_download_renew_before_must_be_positive(kube: KubeEnv, namespace: str) -> None:
    doc = {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "CertificateDownload",
        "metadata": {"name": "zero", "namespace": NS},
        "spec": {
            "repositoryRef": {"name": "depot"},
            "dnsNames": ["a.example.test"],
            "secretName": "a-tls",
            "renewBefore": "0s",
        },
    }
    assert "renewBefore must be positive" in rejected(kube, doc)


def test_repository_url_rules(kube: KubeEnv, namespace: str) -> None:
    assert "https://" in rejected(kube, repository("plain", url="http://depot.example.test/dir"))
    create(kube, repository("loopback", url="http://127.0.0.1:8443/directory"))
    create(kube, repository("tls"))


def test_cluster_repository_selector_rules(kube: KubeEnv, namespace: str) -> None:
    bad = repository(
        "bad-selector",
        "ClusterCertificateRepository",
        namespaceSelector={"matchExpressions": [{"key": "team", "operator": "In"}]},
    )
    assert "In and NotIn need values" in rejected(kube, bad)
    create(
        kube,
        repository(
            "good-selector",
            "ClusterCertificateRepository",
            namespaceSelector={"matchExpressions": [{"key": "team", "operator": "Exists"}]},
        ),
    )


def test_status_is_a_subresource(kube: KubeEnv, namespace: str) -> None:
    doc = delegated("with-status")
    doc["status"] = {"serial": "ff"}
    obj = create(kube, doc)
    assert "status" not in obj or "serial" not in obj["status"]


def test_explain_and_columns(kube: KubeEnv, namespace: str) -> None:
    explained = kube.kubectl("explain", "certificatedownloads.spec.renewBefore").stdout
    assert "Go duration" in explained
    explained = kube.kubectl("explain", "delegatedcertificates.spec.privateKey").stdout
    assert "rotationPolicy" in explained and "Ed25519" in explained
    table = kube.kubectl("get", "dcert", "-n", NS).stdout.splitlines()[0].split()
    assert table[:5] == ["NAME", "READY", "SECRET", "NOT", "AFTER"] and table[-1] == "AGE"
    listed = kube.kubectl("get", "certdepot", "-n", NS, "-o", "name").stdout
    assert "delegatedcertificate.certdepot.io/defaults" in listed  # the category


@pytest.mark.parametrize(("kind", "short"), [("CertificateDownload", "certdl"),
                                             ("DelegatedCertificate", "dcert")])
def test_future_times_print_as_times(kube: KubeEnv, namespace: str, kind: str, short: str) -> None:
    # A `type: date` column prints a time as its age, and kubectl's age of a future time is
    # `<invalid>`; NOT AFTER and RENEWAL are always in the future while a certificate is good.
    name = f"times-{short}"
    doc = delegated(name) if kind == "DelegatedCertificate" else {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "CertificateDownload",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"repositoryRef": {"name": "depot"}, "dnsNames": ["t.example.test"],
                 "secretName": "t-tls"},
    }
    create(kube, doc)
    not_after, renewal = "2031-05-04T03:02:01Z", "2031-04-04T03:02:01Z"
    kube.kubectl(
        "patch", short, name, "-n", NS, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"notAfter": not_after, "renewalTime": renewal}}),
    )
    header, row = kube.kubectl("get", short, name, "-n", NS, "-o", "wide").stdout.splitlines()
    assert "<invalid>" not in row
    cells = _cells(header, row)
    assert cells["NOT AFTER"] == not_after
    assert cells["RENEWAL"] == renewal


def _cells(header: str, row: str) -> dict[str, str]:
    # kubectl aligns each column under its header, which may hold one space ("NOT AFTER");
    # columns are 3+ spaces apart, and an empty cell is blank.
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s{3}))\S", header)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}
