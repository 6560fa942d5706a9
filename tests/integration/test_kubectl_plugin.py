"""``kubectl certdepot`` against the real API server, repository process and operator: run
by the provisioned kubectl, which finds the installed ``kubectl-certdepot`` on PATH as a
plugin, and as ``python -m certdepot kubectl``. Every figure it prints is checked against
what the test reads itself (the Secret decoded here, the API objects)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from repository_harness import ROOT, base_config, kek_env
from test_operator_support import (
    Setup,
    apply,
    get,
    local_ca_issuer,
    namespace,
    repository_and_operator,
    wait_condition,
    wait_for,
)

from certdepot.acme import crypto
from certdepot.controller import renewrequest
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.provision import binary

NAMES = ["shop.example.test", "www.shop.example.test"]
REPO = "plugin-central"
NS = "plugin-a"
PLUGIN = Path(sys.executable).parent / "kubectl-certdepot"


@pytest.fixture(scope="module")
def setup(
    kube: KubeEnv, crds_applied: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("kubectl-plugin")
    root, issuer = local_ca_issuer(workdir, "plugin-root")
    port = procs.free_port()
    cfg = base_config(
        workdir, port, issuers=[issuer],
        certificates=[{"name": "shop", "dnsNames": NAMES, "issuer": "local"}],
        tenants=[{"name": "plugin-cluster", "download": ["shop"]}],
    )
    repository = {
        "name": REPO, "namespace": None, "secret_name": "plugin-eab",
        "secret_namespace": "certdepot",
        "namespaceSelector": {"matchLabels": {"plugin": "yes"}},
    }
    namespaces = [namespace("certdepot", {}), namespace(NS, {"plugin": "yes"}),
                  namespace("plugin-b", {})]
    with repository_and_operator(
        kube, workdir, cfg, port, tenant="plugin-cluster", namespaces=namespaces,
        repository=repository, operator_name="plugin-operator",
    ) as (repo, op):
        s = Setup(kube, repo, root, workdir, op)
        apply(kube, download("shop", NS), download("shop", "plugin-b"))
        wait_condition(kube, "certificatedownload", "shop", NS, status="True", proc=op.proc)
        yield s


def download(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository", "name": REPO},
                 "dnsNames": NAMES, "secretName": f"{name}-tls"},
    }


def kubectl_plugin(s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubectl certdepot ARGS``: kubectl itself finds the plugin on PATH."""
    if not PLUGIN.exists():
        raise AssertionError(f"{PLUGIN} is missing: pip install -e . (the console script)")
    env = {**os.environ, "PATH": f"{PLUGIN.parent}:{os.environ.get('PATH', '')}",
           **kek_env(s.workdir)}
    return subprocess.run(
        [str(binary("kubectl")), "certdepot", *args, f"--kubeconfig={s.kube.kubeconfig}"],
        capture_output=True, text=True, env=env, timeout=120,
    )


def module_plugin(s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m certdepot kubectl ARGS``: the same commands without kubectl."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), **kek_env(s.workdir)}
    return subprocess.run(
        [sys.executable, "-m", "certdepot", "kubectl", *args,
         f"--kubeconfig={s.kube.kubeconfig}"],
        capture_output=True, text=True, env=env, timeout=120,
    )


def as_json(res: subprocess.CompletedProcess[str]) -> Any:
    assert res.stdout, res.stderr
    return json.loads(res.stdout)


def leaf_of(s: Setup, secret: str, ns: str = NS) -> Any:
    obj = get(s.kube, "secret", secret, ns)
    assert obj is not None
    return crypto.parse_pem_chain(base64.b64decode(obj["data"]["tls.crt"]))[0]


def test_status_of_a_ready_download(setup: Setup) -> None:
    s = setup
    res = kubectl_plugin(s, "status", "cdl", "shop", "-n", NS, "-o", "json")
    assert res.returncode == 0, res.stderr
    data = as_json(res)
    leaf = leaf_of(s, "shop-tls")
    obj = get(s.kube, "certificatedownload", "shop", NS)
    assert obj is not None
    assert (data["kind"], data["namespace"], data["name"]) == ("CertificateDownload", NS, "shop")
    assert data["ready"] == "True" and data["reason"] in ("Downloaded", "UpToDate")
    cert = data["secret"]["certificate"]
    assert cert["serial"] == crypto.serial_hex(leaf) == obj["status"]["serial"]
    assert sorted(cert["dnsNames"]) == sorted(NAMES)
    assert cert["issuer"] == leaf.issuer.rfc4514_string()
    assert cert["notAfter"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["secret"]["keyMatches"] is True and data["secret"]["matchesStatus"] is True
    assert data["renewalTime"] == obj["status"]["renewalTime"]
    assert data["lastFailure"] is None
    assert any(e["reason"] == "Downloaded" for e in data["events"])
    assert "PRIVATE KEY" not in res.stdout
    table = kubectl_plugin(s, "status", "certificatedownload/shop", "-n", NS)
    assert table.returncode == 0, table.stderr
    assert crypto.serial_hex(leaf) in table.stdout and "Downloaded" in table.stdout
    assert yaml.safe_load(kubectl_plugin(s, "status", "cdl", "shop", "-n", NS,
                                         "-o", "yaml").stdout)["name"] == "shop"


def test_status_of_a_download_that_is_not_ready(setup: Setup) -> None:
    s = setup
    wait_condition(s.kube, "certificatedownload", "shop", "plugin-b", status="False",
                   reason="RepositoryNotAllowed", proc=s.op.proc)
    res = kubectl_plugin(s, "status", "cdl", "shop", "-n", "plugin-b", "-o", "json")
    assert res.returncode == 1, res.stderr
    data = as_json(res)
    assert data["ready"] == "False" and data["reason"] == "RepositoryNotAllowed"
    assert data["lastFailure"]["reason"] == "RepositoryNotAllowed"
    assert data["lastFailure"]["failedAttempts"] >= 1 and data["lastFailure"]["message"]
    assert data["secret"]["exists"] is False
    table = kubectl_plugin(s, "status", "cdl", "shop", "-n", "plugin-b")
    assert table.returncode == 1 and "RepositoryNotAllowed" in table.stdout


def test_status_of_the_repository_and_of_nothing(setup: Setup) -> None:
    s = setup
    res = module_plugin(s, "status", "ccrepo", REPO, "-o", "json")
    assert res.returncode == 0, res.stderr
    data = as_json(res)
    obj = get(s.kube, "clustercertificaterepository", REPO)
    assert obj is not None
    assert data["repository"]["accountURL"] == obj["status"]["accountURL"]
    assert data["repository"]["downloadEnabled"] is True
    missing = module_plugin(s, "status", "cdl", "no-such", "-n", NS)
    assert missing.returncode == 3 and "not found" in missing.stderr
    assert module_plugin(s, "status", "pods", "x").returncode == 2


def test_inspect_secret(setup: Setup) -> None:
    s = setup
    res = kubectl_plugin(s, "inspect", "secret", "shop-tls", "-n", NS, "-o", "json")
    assert res.returncode == 0, res.stderr
    data = as_json(res)
    leaf = leaf_of(s, "shop-tls")
    assert data["ok"] is True and data["keyMatches"] is True
    assert data["chainCheck"] == "verified"  # up to ca.crt, the test's own root
    assert data["chain"][0]["serial"] == crypto.serial_hex(leaf)
    assert data["ca"][0]["subject"] == s.root.cert.subject.rfc4514_string()
    assert 0 < data["secondsToExpiry"] <= 24 * 3600
    # The same certificate with another key: found out, exit 1, and no key in the output.
    good = get(s.kube, "secret", "shop-tls", NS)
    assert good is not None
    other = crypto.private_key_to_pem(crypto.generate_private_key())
    apply(s.kube, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                   "metadata": {"name": "pasted-tls", "namespace": NS},
                   "data": {"tls.crt": good["data"]["tls.crt"],
                            "tls.key": base64.b64encode(other).decode()}})
    bad = kubectl_plugin(s, "inspect", "secret", "pasted-tls", "-n", NS, "-o", "json")
    assert bad.returncode == 1, bad.stderr
    found = as_json(bad)
    assert found["keyMatches"] is False and found["ok"] is False
    assert any("does not match" in p for p in found["problems"])
    for text in (bad.stdout, bad.stderr, res.stdout):
        assert "PRIVATE KEY" not in text and good["data"]["tls.key"][:40] not in text
    assert kubectl_plugin(s, "inspect", "secret", "absent", "-n", NS).returncode == 3


def test_renew_is_honoured_and_recorded_in_status(setup: Setup) -> None:
    s = setup
    before = get(s.kube, "certificatedownload", "shop", NS)
    assert before is not None
    res = kubectl_plugin(s, "renew", "cdl", "shop", "-n", NS, "--wait", "60")
    assert res.returncode == 0, res.stdout + res.stderr + s.op.proc.tail(40)
    after = get(s.kube, "certificatedownload", "shop", NS)
    assert after is not None
    requested = after["metadata"]["annotations"][renewrequest.ANNOTATION]
    assert after["status"][renewrequest.STATUS_FIELD] == requested
    assert requested != (before["status"].get(renewrequest.STATUS_FIELD))
    assert "RenewalRequested" in after["status"]["conditions"][0]["message"]
    shown = as_json(kubectl_plugin(s, "status", "cdl", "shop", "-n", NS, "-o", "json"))
    assert shown["renewal"] == {"requested": requested, "lastHonoured": requested,
                                "pending": False}
    events = s.kube.kubectl("get", "events", "-n", NS, "-o", "json").stdout
    assert "RenewalRequested" in events
    # Repositories hold no certificate of their own to renew: a usage error.
    assert kubectl_plugin(s, "renew", "ccrepo", REPO).returncode == 2


def test_inventory_shows_who_holds_which_serial(setup: Setup) -> None:
    s = setup
    serial = wait_for("the Secret's serial", lambda: crypto.serial_hex(leaf_of(s, "shop-tls")))
    config = str(s.repo.config_path)
    res = kubectl_plugin(s, "inventory", "shop", "--repository-config", config, "-o", "json")
    assert res.returncode == 0, res.stderr
    [entry] = as_json(res)
    assert entry["name"] == "shop" and entry["current"]["serial"] == serial
    [holder] = entry["holders"]
    assert holder["tenant"] == "plugin-cluster" and holder["serial"] == serial
    assert holder["current"] is True and holder["account"]
    table = kubectl_plugin(s, "inventory", "shop", "--repository-config", config)
    assert table.returncode == 0 and "plugin-cluster" in table.stdout and serial in table.stdout
    missing = kubectl_plugin(s, "inventory", "nothing", "--repository-config", config)
    assert missing.returncode == 3
    # No repository to ask: exit 4 with the reason.
    broken = kubectl_plugin(s, "inventory", "--repository-config", str(s.workdir / "absent"))
    assert broken.returncode == 4 and "inventory failed" in broken.stderr
