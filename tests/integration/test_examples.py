"""examples/ never rot: every manifest applies to the real API server (CRD schemas, CEL rules,
the Ingress API), as written and as `certdepot demo` fills it in, and the demo's repository
configuration offers exactly what the examples ask for.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from certdepot.demo import manifests, repoconfig
from certdepot.repository.config import parse_config
from certdepot.testenv.kube import KubeEnv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "demo.md"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def _ids(path: Path) -> str:
    return path.name


def test_examples_exist_and_demo_finds_them() -> None:
    assert manifests.examples_dir() == EXAMPLES
    kinds = {d["kind"] for d in manifests.load(EXAMPLES)}
    assert {"ClusterCertificateRepository", "CertificateDownload", "DelegatedCertificate",
            "Ingress"} <= kinds, kinds


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_example_is_commented_and_documented(path: Path) -> None:
    text = path.read_text()
    head = [line for line in text.splitlines()[:3] if line.strip()]
    assert head and head[0].startswith("#"), f"{path.name} does not open with a comment"
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 3, (
        f"{path.name}: say what it is for and what to change in comments")
    assert DOC.is_file(), f"{DOC} is missing"
    assert f"examples/{path.name}" in DOC.read_text(), f"docs/demo.md does not describe {path}"


def _apply(kube: KubeEnv, docs: list[dict[str, Any]]) -> str:
    stream = yaml.safe_dump_all(docs, sort_keys=False)
    return kube.kubectl("apply", "-f", "-", input=stream).stdout


def _get(kube: KubeEnv, doc: dict[str, Any]) -> dict[str, Any]:
    kind = doc["kind"].lower()
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    resource = f"{kind}.{group}" if group else kind
    args = ["get", resource, doc["metadata"]["name"], "-o", "json"]
    if doc["metadata"].get("namespace"):
        args += ["-n", doc["metadata"]["namespace"]]
    result: dict[str, Any] = json.loads(kube.kubectl(*args).stdout)
    return result


def _delete_objects(kube: KubeEnv, docs: list[dict[str, Any]]) -> None:
    # Namespaces are left: without kube-controller-manager they would never finish
    # terminating, and a later test could not create objects in them.
    objects = [d for d in docs if d["kind"] != "Namespace"]
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                 input=yaml.safe_dump_all(objects))


def test_examples_apply_as_written(kube: KubeEnv, crds_applied: list[str]) -> None:
    docs = manifests.load(EXAMPLES)
    try:
        out = _apply(kube, docs)
        for doc in docs:
            assert doc["metadata"]["name"] in out
            stored = _get(kube, doc)
            if "spec" in doc:
                # The API server kept every field we wrote (no typo pruned by the schema).
                for key, value in doc["spec"].items():
                    assert key in stored["spec"], f"{doc['kind']}: {key} was pruned"
                    if not isinstance(value, dict):
                        assert stored["spec"][key] == value
    finally:
        _delete_objects(kube, docs)


def test_examples_apply_as_the_demo_fills_them_in(kube: KubeEnv,
                                                  crds_applied: list[str]) -> None:
    repo = manifests.Repository(directory_url="https://127.0.0.1:8443/directory",
                                ca_pem=b"-----BEGIN CERTIFICATE-----\n...\n", eab_kid="kid-1")
    docs = manifests.customise(manifests.load(EXAMPLES), repo)
    try:
        _apply(kube, docs)
        stored = _get(kube, next(d for d in docs
                                 if d["kind"] == "ClusterCertificateRepository"))
        assert stored["spec"]["url"] == repo.directory_url
        assert base64.b64decode(stored["spec"]["caBundle"]) == repo.ca_pem
        assert stored["spec"]["externalAccountBinding"]["keyID"] == "kid-1"
    finally:
        _delete_objects(kube, docs)


def test_a_broken_example_would_be_caught(kube: KubeEnv, crds_applied: list[str]) -> None:
    """The apply above can fail: the server rejects what the schema forbids."""
    doc = next(d for d in manifests.load(EXAMPLES) if d["kind"] == "DelegatedCertificate")
    doc["metadata"]["name"] = "broken"
    doc["spec"]["renewBefore"] = "48h"  # longer than duration: a CEL rule says no
    result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0
    assert "renewBefore must be shorter than duration" in result.stderr


def test_demo_repository_offers_what_the_examples_ask_for(tmp_path: Path) -> None:
    config = parse_config(repoconfig.build(tmp_path, 8443))
    docs = manifests.load(EXAMPLES)
    tenant = config.tenant(repoconfig.TENANT)
    assert tenant is not None
    granted = {frozenset(c.dns_names) for c in config.certificates if c.name in tenant.download}
    delegations = {d.name: d for d in tenant.delegations}
    for item in manifests.expected(docs):
        if item.kind == "CertificateDownload":
            assert frozenset(item.dns_names) in granted, f"{item.label}: no managed certificate"
        if item.kind == "DelegatedCertificate":
            doc = next(d for d in docs if d["kind"] == item.kind)
            delegation = delegations[doc["spec"]["delegation"]]
            assert all(n.startswith("cdn-") and n.endswith(".demo.example")
                       for n in item.dns_names)
            assert delegation.max_lifetime.total_seconds() == 24 * 3600
            assert doc["spec"]["duration"] == "24h"
    # The Ingress is served through the shim, as a CertificateDownload named after its Secret.
    assert any(i.via.startswith("Ingress") for i in manifests.expected(docs))
