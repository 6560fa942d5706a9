"""``kubectl certdepot`` against the real API server, repository process and operator: run
by the provisioned kubectl, which finds the installed ``kubectl-certdepot`` on PATH as a
plugin, and as ``python -m certdepot kubectl``. Every figure it prints is checked against
what the test reads itself (the Secret decoded here, the API objects)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from repository_harness import ROOT, RepoProcess, base_config, create_tenant, kek_env
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
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.controller.core import renewrequest
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.provision import binary

NAMES = ["shop.example.test", "www.shop.example.test"]
REPO = "plugin-central"
NS = "plugin-a"
PLUGIN = Path(sys.executable).parent / "kubectl-certdepot"
ADMIN_TOKEN = "plugin-admin-token-" + "y" * 32


def admin_config(workdir: Path) -> dict[str, Any]:
    """The repository configuration's ``admin:`` section, its token in a file."""
    token = workdir / "admin-token"
    token.write_text(ADMIN_TOKEN)
    return {"tokenFile": str(token)}


def laggard(repo: RepoProcess, workdir: Path, tenant: str, names: list[str]) -> str:
    """A consumer outside the operator: a fresh tenant's ACME account downloads the
    certificate once and never again. The serial it holds."""
    kid, hmac_key = create_tenant(workdir, repo.config_path, tenant)

    async def download() -> str:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=(kid, hmac_key))
            for _ in range(120):
                try:
                    pem, _key = await client.download_certificate(names)
                    return crypto.serial_hex(crypto.parse_pem_chain(pem)[0])
                except AcmeProblem as exc:
                    if exc.short_type != "orderNotReady":
                        raise
                    await asyncio.sleep(0.25)
        raise AssertionError("the repository never held the certificate\n"
                             + repo.proc.tail(40))

    return asyncio.run(download())


def rotate(repo: RepoProcess, name: str) -> dict[str, Any]:
    """The admin API's rotation: the certificate is revoked and replaced at once."""
    res = httpx.post(f"{repo.base_url}/admin/v1/certificates/{name}/rotate",
                     json={"reason": "superseded"}, verify=repo.ssl_context(), timeout=60,
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert res.status_code == 200, res.text + repo.proc.tail(40)
    done: dict[str, Any] = res.json()
    return done


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
        tenants=[{"name": "plugin-cluster", "download": ["shop"]},
                 {"name": "plugin-laggard", "download": ["shop"]}],
        admin=admin_config(workdir),
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


def test_inventory_shows_the_repositorys_consumers(setup: Setup) -> None:
    s = setup
    serial = wait_for("the Secret's serial", lambda: crypto.serial_hex(leaf_of(s, "shop-tls")))
    apply(s.kube, {"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "plugin-admin", "namespace": "certdepot"},
                   "stringData": {"admin-token": ADMIN_TOKEN}})
    # The URL and CA from the repository object, the token from a Secret.
    ask = ("--repository", f"ccrepo/{REPO}", "--token-secret", "certdepot/plugin-admin")
    res = kubectl_plugin(s, "inventory", "shop", *ask, "-o", "json")
    assert res.returncode == 0, res.stderr
    [entry] = as_json(res)
    assert entry["name"] == "shop" and entry["current"]["serial"] == serial
    [consumer] = [c for c in entry["consumers"] if c["tenant"] == "plugin-cluster"]
    assert consumer["serial"] == serial and consumer["state"] == "current"
    assert consumer["resource"] == f"{NS}/shop", consumer
    assert ADMIN_TOKEN not in res.stdout + res.stderr
    table = kubectl_plugin(s, "inventory", "shop", *ask)
    assert table.returncode == 0 and "plugin-cluster" in table.stdout and serial in table.stdout
    assert kubectl_plugin(s, "inventory", "nothing", *ask).returncode == 3
    # A wrong token, or none: refused by the repository (4), or a usage error (2).
    wrong = s.workdir / "wrong-token"
    wrong.write_text("z" * 40)
    refused = kubectl_plugin(s, "inventory", "--repository", f"ccrepo/{REPO}",
                             "--token-file", str(wrong))
    assert refused.returncode == 4 and "refused the admin token" in refused.stderr
    assert "z" * 40 not in refused.stderr


def test_inventory_stale_names_the_consumer_left_on_a_rotated_serial(setup: Setup) -> None:
    s = setup
    ask = ("--repository", f"ccrepo/{REPO}", "--token-file", str(s.workdir / "admin-token"))
    held = laggard(s.repo, s.workdir, "plugin-laggard", NAMES)
    clean = kubectl_plugin(s, "inventory", "shop", "--stale", *ask)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no consumer holds a revoked or superseded serial" in clean.stdout
    done = rotate(s.repo, "shop")
    assert done["revokedSerial"] == held and done["newSerial"] != held
    res = kubectl_plugin(s, "inventory", "shop", "--stale", *ask, "-o", "json")
    assert res.returncode == 1, res.stdout + res.stderr  # stale consumers: unhealthy
    [entry] = as_json(res)
    assert entry["current"]["serial"] == done["newSerial"]
    [late] = [c for c in entry["consumers"] if c["tenant"] == "plugin-laggard"]
    assert late["serial"] == held and late["state"] == "revoked"
    assert all(c["state"] != "current" for c in entry["consumers"])
    table = kubectl_plugin(s, "inventory", "--stale", *ask)
    assert table.returncode == 1 and "plugin-laggard" in table.stdout
    assert "REVOKED" in table.stdout and held in table.stdout
