"""RepositoryCertificate and RepositoryTenant on the real kube-apiserver (issue 20, items 1-3).

A real repository process over TLS watches the resources with the chart's own Role (a
ServiceAccount token, no more rights than the chart grants) and applies them without a
restart: a declared certificate is obtained and its status shows serial, notAfter and
consumers; a declared tenant gets its EAB credentials in a Secret shaped like a
keySecretRef's, and an ACME client using only that Secret downloads the certificate; a
withdrawn grant is refused at the next request; a name also in the file is a Conflict; a
rotation is one field; a Secret the repository did not write is never overwritten."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from repository_harness import RepoProcess, base_config, cli, running, write_config
from test_operator_support import apply, get, ready_condition, wait_condition, wait_for

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.provision import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "certdepot"
NS = "depot-resources"
RELEASE = "res"
SERVICE_ACCOUNT = f"{RELEASE}-certdepot-repository"  # the chart's name for it


def chart_rbac(kube: KubeEnv, workdir: Path, ns: str = NS) -> Path:
    """Apply the chart's repository ServiceAccount, Role and RoleBinding (as rendered with
    kubernetesResources on) in ``ns`` and return a kubeconfig holding that ServiceAccount's
    token."""
    home = workdir / "helm"
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "c"), "HELM_CACHE_HOME": str(home / "k"),
           "HELM_DATA_HOME": str(home / "d")}
    out = subprocess.run(
        [str(binary("helm")), "template", RELEASE, str(CHART), "--namespace", ns,
         "--set", "repository.kubernetesResources.enabled=true",
         "--show-only", "templates/repository/serviceaccount.yaml",
         "--show-only", "templates/repository/rbac.yaml"],
        capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}, out
    kube.kubectl("apply", "-f", "-", input=out)
    return kube.kubeconfig_for(ns, SERVICE_ACCOUNT, workdir / "repository.kubeconfig")


def certificate(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryCertificate",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryTenant",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def eab_from_secret(kube: KubeEnv, name: str) -> tuple[str, str]:
    secret = get(kube, "secret", name, NS)
    assert secret is not None, f"no Secret {name}"
    data = secret["data"]
    assert set(data) == {"secret", "keyID"}, data.keys()
    return base64.b64decode(data["keyID"]).decode(), base64.b64decode(data["secret"]).decode()


@pytest.fixture(scope="module")
def depot(kube: KubeEnv, crds_applied: list[str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[RepoProcess, Path]]:
    workdir = tmp_path_factory.mktemp("resources")
    kube.kubectl("create", "namespace", NS)
    kubeconfig = chart_rbac(kube, workdir)
    port = procs.free_port()
    cfg = base_config(
        workdir, port, configReloadInterval="1s",
        kubernetes={"resources": True, "namespace": NS, "kubeconfig": str(kubeconfig),
                    "resyncInterval": "2s"},
        issuers=[{"name": "local", "type": "local-ca", "commonName": "resources CA"},
                 {"name": "other", "type": "local-ca", "commonName": "other CA"}],
        certificates=[{"name": "shop", "dnsNames": ["shop.res.test"], "issuer": "local"}],
        tenants=[{"name": "file-team", "download": ["shop"]}])
    path = write_config(workdir, cfg)
    try:
        with running(workdir, path, port) as repo:
            yield repo, workdir
    finally:
        kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def applied_count(repo: RepoProcess) -> int:
    """How many configurations from the resources the repository has put in force."""
    return repo.proc.log_path.read_text().count("configuration from kubernetes applied")


async def download(repo: RepoProcess, eab: tuple[str, str], names: list[str]
                   ) -> tuple[str, crypto.PrivateKey]:
    async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                          verify=str(repo.ca_path)) as client:
        await client.new_account(eab=eab)
        return await client.download_certificate(names)


def test_declared_certificate_and_tenant_are_served(kube: KubeEnv, depot: Any) -> None:
    repo, workdir = depot
    apply(kube, certificate("blog", dnsNames=["blog.res.test"], issuer="local",
                            renewBefore="10d", allowedTenants=["team"]),
          tenant("team", download=["shop"]))
    team = wait_condition(kube, "repositorytenant", "team", NS, status="True", proc=repo.proc)
    assert team["status"]["eab"]["secretName"] == "team-eab"
    kid, hmac = eab_from_secret(kube, "team-eab")
    assert team["status"]["eab"]["keyID"] == kid
    assert hmac not in yaml.safe_dump(team), "key material in the resource"
    chain, key = asyncio.run(download(repo, (kid, hmac), ["blog.res.test"]))
    leaf = crypto.parse_pem_chain(chain)[0]
    assert crypto.public_key_matches(key, leaf)
    asyncio.run(download(repo, (kid, hmac), ["shop.res.test"]))  # the file's certificate

    serial = crypto.serial_hex(leaf)

    def shows_consumer() -> dict[str, Any] | None:
        obj = get(kube, "repositorycertificate", "blog", NS)
        st = (obj or {}).get("status") or {}
        return obj if st.get("serial") == serial and st.get("consumers") == 1 else None

    blog = wait_for("blog's status", shows_consumer, proc=repo.proc)
    assert ready_condition(blog)["reason"] == "Issued"
    assert blog["status"]["notAfter"].startswith(str(leaf.not_valid_after_utc.year))
    # The printer columns show what the repository holds.
    table = kube.kubectl("get", "repocert", "blog", "-n", NS).stdout
    assert serial in table and "True" in table, table
    accounts = wait_for("accounts bound", lambda: (get(kube, "repotenant", "team", NS) or {})
                        .get("status", {}).get("accountsBound") == 2, proc=repo.proc)
    assert accounts
    row = kube.kubectl("get", "repotenant", "team", "-n", NS).stdout.splitlines()
    assert row[0].split()[:3] == ["NAME", "READY", "ACCOUNTS"], row
    assert row[1].split()[:4] == ["team", "True", "2", "team-eab"], row

    # A changed issuer signs the next renewal; the CLI knows the declared certificate
    # (and says where the truth is).
    applied = applied_count(repo)
    apply(kube, certificate("blog", dnsNames=["blog.res.test"], issuer="other",
                            renewBefore="10d", allowedTenants=["team"]))
    wait_for("the new issuer in force", lambda: applied_count(repo) > applied, proc=repo.proc)
    res = cli(workdir, repo.config_path, "renew", "blog")
    assert "renewal of blog requested" in res.stdout
    assert "RepositoryCertificate and RepositoryTenant resources in depot-resources are " \
        "the source of truth" in res.stderr, res.stderr
    wait_for("the renewal", lambda: (get(kube, "repocert", "blog", NS) or {}).get(
        "status", {}).get("serial") not in (None, serial), proc=repo.proc)
    chain, _ = asyncio.run(download(repo, (kid, hmac), ["blog.res.test"]))
    assert "other CA" in crypto.parse_pem_chain(chain)[0].issuer.rfc4514_string()

    # A withdrawn grant is refused at the next request, without a restart.
    apply(kube, certificate("blog", dnsNames=["blog.res.test"], issuer="local",
                            renewBefore="10d", allowedTenants=[]))

    def refused() -> bool:
        try:
            asyncio.run(download(repo, (kid, hmac), ["blog.res.test"]))
        except AcmeProblem as exc:
            assert exc.short_type == "unauthorized", exc
            return True
        return False

    assert wait_for("the withdrawn grant refused", refused, proc=repo.proc)


def test_a_name_in_the_file_wins_and_the_resource_says_so(kube: KubeEnv, depot: Any) -> None:
    repo, _ = depot
    apply(kube, certificate("shop", dnsNames=["evil.res.test"], issuer="local"),
          tenant("file-team", download=["shop"], issue=["*.res.test"]))
    cert = wait_condition(kube, "repositorycertificate", "shop", NS, status="False",
                          reason="Conflict", proc=repo.proc)
    assert "also defined in the configuration file" in ready_condition(cert)["message"]
    wait_condition(kube, "repositorytenant", "file-team", NS, status="False",
                   reason="Conflict", proc=repo.proc)
    assert get(kube, "secret", "file-team-eab", NS) is None
    apply(kube, tenant("bad", download=["missing"]))
    bad = wait_condition(kube, "repositorytenant", "bad", NS, status="False", reason="Invalid",
                         proc=repo.proc)
    assert "spec.download: unknown certificate 'missing'" in ready_condition(bad)["message"]


def test_rotation_is_one_field_and_foreign_secrets_are_left_alone(kube: KubeEnv,
                                                                    depot: Any) -> None:
    repo, _ = depot
    apply(kube, tenant("rotating", download=["shop"]))
    wait_condition(kube, "repositorytenant", "rotating", NS, status="True", proc=repo.proc)
    old = eab_from_secret(kube, "rotating-eab")
    apply(kube, tenant("rotating", download=["shop"], eab={"rotationGeneration": 1}))
    new = wait_for("the rotated Secret", lambda: (eab := eab_from_secret(kube, "rotating-eab"))
                   != old and eab, proc=repo.proc)
    assert new[0] != old[0] and new[1] != old[1]
    obj = wait_for("the status", lambda: (o := get(kube, "repotenant", "rotating", NS)) and
                   o["status"]["eab"]["rotationGeneration"] == 1 and o, proc=repo.proc)
    assert obj["status"]["eab"]["keyID"] == new[0]
    with pytest.raises(AcmeProblem):
        asyncio.run(download(repo, old, ["shop.res.test"]))
    asyncio.run(download(repo, new, ["shop.res.test"]))

    kube.kubectl("create", "secret", "generic", "precious", "-n", NS,
                 "--from-literal=key=do-not-touch")
    apply(kube, tenant("grabber", eab={"secretName": "precious"}))
    wait_condition(kube, "repositorytenant", "grabber", NS, status="False",
                   reason="SecretConflict", proc=repo.proc)
    precious = get(kube, "secret", "precious", NS)
    assert precious is not None and set(precious["data"]) == {"key"}
    log = repo.proc.log_path.read_text()
    for secret in (old[1], new[1]):
        assert secret not in log
    assert "Forbidden" not in log and "internal error" not in log


@pytest.mark.parametrize(("verb", "resource", "allowed"), [
    ("watch", "repositorycertificates.certdepot.io", True),
    ("patch", "repositorytenants.certdepot.io --subresource=status", True),
    ("create", "secrets", True),
    ("update", "secrets", True),
    ("list", "secrets", False),
    ("delete", "secrets", False),
    ("update", "repositorytenants.certdepot.io", False),
    ("create", "repositorycertificates.certdepot.io", False),
    ("get", "configmaps", False),
])
def test_the_charts_role_grants_this_much_and_no_more(kube: KubeEnv, depot: Any, verb: str,
                                                      resource: str, allowed: bool) -> None:
    _, workdir = depot
    as_repository = workdir / "repository.kubeconfig"
    res = kube.kubectl("auth", "can-i", verb, *resource.split(), "-n", NS, check=False,
                       kubeconfig=as_repository)
    assert res.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, res.stdout)
    other = kube.kubectl("auth", "can-i", verb, *resource.split(), "-n", "default",
                         check=False, kubeconfig=as_repository)
    assert other.stdout.strip() == "no", f"{verb} {resource} granted outside {NS}"


def test_inventory_lists_the_declared_certificates_too(kube: KubeEnv, depot: Any) -> None:
    repo, workdir = depot
    apply(kube, certificate("listed", dnsNames=["listed.res.test"], issuer="local"))
    wait_condition(kube, "repositorycertificate", "listed", NS, status="True", proc=repo.proc)
    res = cli(workdir, repo.config_path, "inventory", "--json")
    names = {e["name"] for e in json.loads(res.stdout)}
    assert {"shop", "listed"} <= names, names  # the file's and the resource's
    issued = next(e for e in json.loads(res.stdout) if e["name"] == "listed")
    assert issued["current"] is not None and issued["dns_names"] == ["listed.res.test"]


def test_no_more_resources_are_read_than_max_resources(
        kube: KubeEnv, crds_applied: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing reads pages and stops past the cap, on the real API server's paging."""
    from certdepot.repository import kubewatch
    from certdepot.repository.processconfig import KubernetesResources

    ns = "depot-many"
    kube.kubectl("create", "namespace", ns)
    try:
        many = [{**tenant(f"t{i:02d}"), "metadata": {"name": f"t{i:02d}", "namespace": ns}}
                for i in range(7)]
        apply(kube, *many)
        monkeypatch.setattr(kubewatch, "PAGE", 2)
        cfg = KubernetesResources(resources=True, namespace=ns, kubeconfig=kube.kubeconfig,
                                  max_resources=3)
        with kubewatch.api_client(cfg) as client:
            custom = kubewatch.kubernetes.client.CustomObjectsApi(client)
            listed = kubewatch.list_bounded(custom, ns, "repositorytenants", 3)
            everything = kubewatch.list_bounded(custom, ns, "repositorytenants", 100)
        assert [o["metadata"]["name"] for o in listed] == ["t00", "t01", "t02"]
        assert len(everything) == 7
        _, tenants = kubewatch.read_declared(cfg)
        assert [t.name for t in tenants] == ["t00", "t01", "t02"]
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
