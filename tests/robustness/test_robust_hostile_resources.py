"""RepositoryCertificate and RepositoryTenant resources attacked (issue 20).

First the merge itself (resources.py, resourcelimits.py), with every malformed spec the API
server would let through if its schema were missing or looser: each is ``Invalid`` with the
field named, never an exception, and a good resource next to it still applies. Then the
real kube-apiserver with the shipped CRDs and a real repository process holding the
chart's Role: the schema refuses what it bounds (naming the field), what passes the schema
but not the repository is ``Invalid``, a tenant resource pointing ``spec.eab.secretName`` at
the key-encryption key's Secret or a TLS Secret never overwrites or leaks it, and the good
resources applied alongside still become Ready."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from repository_harness import RepoProcess, base_config, running, write_config
from test_operator_support import apply, get, ready_condition, wait_condition
from test_repository_resources import chart_rbac
from test_resources import file_config

from certdepot.repository.resources import ACCEPTED, INVALID, Declared, merge
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv

NAMES = ["ok.example.test"]

# (label, spec, the field the message must name)
BAD_CERTIFICATES: list[tuple[str, Any, str]] = [
    ("spec-list", ["x"], "spec"),
    ("spec-string", "x", "spec"),
    ("allowed-int", {"dnsNames": NAMES, "issuer": "local", "allowedTenants": 5},
     "spec.allowedTenants"),
    ("allowed-string", {"dnsNames": NAMES, "issuer": "local", "allowedTenants": "team-a"},
     "spec.allowedTenants"),
    ("allowed-object", {"dnsNames": NAMES, "issuer": "local", "allowedTenants": {"a": 1}},
     "spec.allowedTenants"),
    ("allowed-item-object", {"dnsNames": NAMES, "issuer": "local",
                             "allowedTenants": [{"a": 1}]}, "spec.allowedTenants.0"),
    ("allowed-item-slash", {"dnsNames": NAMES, "issuer": "local",
                            "allowedTenants": ["a/b"]}, "spec.allowedTenants.0"),
    ("allowed-huge", {"dnsNames": NAMES, "issuer": "local",
                      "allowedTenants": [f"t{i}" for i in range(1001)]}, "spec.allowedTenants"),
    ("dns-star", {"dnsNames": ["*"], "issuer": "local"}, "spec.dnsNames.0"),
    ("dns-star-tld", {"dnsNames": ["*.com"], "issuer": "local"}, "spec.dnsNames.0"),
    ("dns-partial-tld", {"dnsNames": ["a*.test"], "issuer": "local"}, "spec.dnsNames.0"),
    ("dns-invalid", {"dnsNames": ["a..b.test"], "issuer": "local"}, "spec.dnsNames"),
    ("dns-hyphen", {"dnsNames": ["-a.example.test"], "issuer": "local"}, "spec.dnsNames"),
    ("dns-empty", {"dnsNames": [], "issuer": "local"}, "spec.dnsNames"),
    ("dns-string", {"dnsNames": "a.example.test", "issuer": "local"}, "spec.dnsNames"),
    ("dns-huge", {"dnsNames": [f"n{i}.example.test" for i in range(101)], "issuer": "local"},
     "spec.dnsNames"),
    ("lifetime-0", {"dnsNames": NAMES, "issuer": "local", "lifetime": "0"}, "spec.lifetime"),
    ("lifetime-0d", {"dnsNames": NAMES, "issuer": "local", "lifetime": "0d"}, "spec.lifetime"),
    ("lifetime-negative", {"dnsNames": NAMES, "issuer": "local", "lifetime": "-5d"},
     "spec.lifetime"),
    ("lifetime-number-negative", {"dnsNames": NAMES, "issuer": "local", "lifetime": -60},
     "spec.lifetime"),
    ("lifetime-huge", {"dnsNames": NAMES, "issuer": "local", "lifetime": "99999999999d"},
     "spec.lifetime"),
    ("lifetime-11y", {"dnsNames": NAMES, "issuer": "local", "lifetime": "4000d"},
     "spec.lifetime"),
    ("renew-0", {"dnsNames": NAMES, "issuer": "local", "renewBefore": "0s"}, "spec.renewBefore"),
    ("renew-huge", {"dnsNames": NAMES, "issuer": "local", "renewBefore": "9" * 30 + "d"},
     "spec.renewBefore"),
    ("renew-longer-than-life", {"dnsNames": NAMES, "issuer": "local", "renewBefore": "30d",
                                "lifetime": "1d"}, "spec.renewBefore"),
    ("issuer-int", {"dnsNames": NAMES, "issuer": 5}, "spec.issuer"),
    ("issuer-unknown", {"dnsNames": NAMES, "issuer": "nope"}, "spec.issuer"),
    ("keytype-bad", {"dnsNames": NAMES, "issuer": "local", "keyType": "dsa"}, "spec.keyType"),
]

BAD_TENANTS: list[tuple[str, Any, str]] = [
    ("spec-list", [1], "spec"),
    ("issue-star", {"issue": ["*"]}, "spec.issue.0"),
    ("issue-star-tld", {"issue": ["*.com"]}, "spec.issue.0"),
    ("issue-invalid", {"issue": ["a..b"]}, "spec.issue"),
    ("issue-huge", {"issue": [f"*.n{i}.example.test" for i in range(1001)]}, "spec.issue"),
    ("download-int", {"download": 5}, "spec.download"),
    ("download-item-int", {"download": [5]}, "spec.download.0"),
    ("download-unknown", {"download": ["missing"]}, "spec.download"),
    ("download-huge", {"download": ["shop"] * 1001}, "spec.download"),
    ("revoke-unknown", {"revoke": ["missing"]}, "spec.revoke"),
    ("issuer-unknown", {"issuer": "nope"}, "spec.issuer"),
    ("delegations-string", {"delegations": "x"}, "spec.delegations"),
    ("delegation-string", {"delegations": ["x"]}, "spec.delegations.0"),
    ("delegation-life-0", {"delegations": [{"name": "d", "issuer": "local", "csrTemplate": {},
                                            "maxLifetime": "0"}]},
     "spec.delegations.0.maxLifetime"),
    ("delegation-pattern-tld", {"delegations": [{"name": "d", "issuer": "local",
                                                 "csrTemplate": {}, "namePatterns": ["*.com"]}]},
     "spec.delegations.0.namePatterns.0"),
    ("delegation-template", {"delegations": [{"name": "d", "issuer": "local",
                                              "csrTemplate": {"keyTypes": "x"}}]},
     "spec.delegations.0.csrTemplate"),
    ("delegations-huge", {"delegations": [{"name": f"d{i}"} for i in range(101)]},
     "spec.delegations"),
    ("eab-string", {"eab": "x"}, "spec.eab"),
    ("eab-list", {"eab": [1]}, "spec.eab"),
    ("eab-secret-int", {"eab": {"secretName": 5}}, "spec.eab.secretName"),
    ("eab-secret-upper", {"eab": {"secretName": "Bad_Name"}}, "spec.eab.secretName"),
    ("eab-secret-slash", {"eab": {"secretName": "../kube-system/x"}}, "spec.eab.secretName"),
    ("eab-secret-long", {"eab": {"secretName": "a" * 254}}, "spec.eab.secretName"),
    ("eab-generation-string", {"eab": {"rotationGeneration": "abc"}},
     "spec.eab.rotationGeneration"),
    ("eab-generation-negative", {"eab": {"rotationGeneration": -3}},
     "spec.eab.rotationGeneration"),
    ("eab-generation-bool", {"eab": {"rotationGeneration": True}},
     "spec.eab.rotationGeneration"),
    ("eab-generation-huge", {"eab": {"rotationGeneration": 2**64}},
     "spec.eab.rotationGeneration"),
]


def _invalid(verdict: Any, field: str) -> None:
    assert verdict.reason == INVALID, verdict
    assert verdict.message.startswith(field + ":") or verdict.message.startswith(field + "."), \
        verdict.message


@pytest.mark.parametrize(("label", "spec", "field"), BAD_CERTIFICATES,
                         ids=[c[0] for c in BAD_CERTIFICATES])
def test_bad_certificate_is_invalid_and_the_rest_applies(label: str, spec: Any,
                                                          field: str) -> None:
    merged = merge(file_config(), [Declared("bad", spec),
                                   Declared("good", {"dnsNames": NAMES, "issuer": "local",
                                                     "allowedTenants": ["team-a"]})], [])
    _invalid(merged.certificates["bad"], field)
    assert merged.certificates["good"].reason == ACCEPTED
    assert merged.config.certificate("bad") is None
    team_a = merged.config.tenant("team-a")
    assert team_a is not None and "bad" not in team_a.download and "good" in team_a.download


@pytest.mark.parametrize(("label", "spec", "field"), BAD_TENANTS, ids=[t[0] for t in BAD_TENANTS])
def test_bad_tenant_is_invalid_and_the_rest_applies(label: str, spec: Any, field: str) -> None:
    merged = merge(file_config(), [], [Declared("bad", spec),
                                       Declared("good", {"download": ["shop"]})])
    _invalid(merged.tenants["bad"], field)
    assert merged.tenants["good"].reason == ACCEPTED
    assert merged.config.tenant("bad") is None


def test_a_name_longer_than_the_store_keeps_is_invalid() -> None:
    long = "n" * 201
    merged = merge(file_config(), [Declared(long, {"dnsNames": NAMES, "issuer": "local"})],
                   [Declared(long, {}), Declared("n" * 200, {})])
    _invalid(merged.certificates[long], "metadata.name")
    _invalid(merged.tenants[long], "metadata.name")
    assert merged.tenants["n" * 200].reason == ACCEPTED


def test_good_wildcards_and_durations_still_apply() -> None:
    merged = merge(file_config(), [Declared("w", {"dnsNames": ["*.w.example.test"],
                                                  "issuer": "local", "lifetime": "3650d",
                                                  "renewBefore": "1s"})],
                   [Declared("t", {"issue": ["cdn-*.example.test", "*.t.example.test"],
                                   "eab": {"secretName": "t.eab-1", "rotationGeneration": 0}})])
    assert merged.certificates["w"].reason == ACCEPTED, merged.certificates
    assert merged.tenants["t"].reason == ACCEPTED, merged.tenants


# --- the real API server ------------------------------------------------------------------

NS = "depot-hostile"


def certificate(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryCertificate",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "certdepot.io/v1alpha1", "kind": "RepositoryTenant",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


@pytest.fixture(scope="module")
def depot(kube: KubeEnv, crds_applied: list[str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[RepoProcess]:
    workdir = tmp_path_factory.mktemp("hostile-resources")
    kube.kubectl("create", "namespace", NS)
    kubeconfig = chart_rbac(kube, workdir, NS)
    port = procs.free_port()
    cfg = base_config(
        workdir, port, configReloadInterval="1s",
        kubernetes={"resources": True, "namespace": NS, "kubeconfig": str(kubeconfig),
                    "resyncInterval": "2s"},
        issuers=[{"name": "local", "type": "local-ca"}],
        certificates=[{"name": "shop", "dnsNames": ["shop.res.test"], "issuer": "local"}],
        tenants=[{"name": "file-team", "download": ["shop"]}])
    try:
        with running(workdir, write_config(workdir, cfg), port) as repo:
            yield repo
    finally:
        kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)


SCHEMA_REFUSED: list[tuple[dict[str, Any], str]] = [
    (certificate("h-dns-huge", dnsNames=[f"n{i}.res.test" for i in range(101)],
                 issuer="local"), "spec.dnsNames"),
    (certificate("h-life-neg", dnsNames=["a.res.test"], issuer="local", lifetime="-5d"),
     "spec.lifetime"),
    (certificate("h-life-long", dnsNames=["a.res.test"], issuer="local",
                 lifetime="9" * 40 + "d"), "spec.lifetime"),
    (certificate("h-allowed-int", dnsNames=["a.res.test"], issuer="local", allowedTenants=5),
     "spec.allowedTenants"),
    (tenant("h-issue-huge", issue=[f"*.n{i}.res.test" for i in range(1001)]), "spec.issue"),
    (tenant("h-download-huge", download=["shop"] * 1001), "spec.download"),
    (tenant("h-secret-upper", eab={"secretName": "Bad_Name"}), "spec.eab.secretName"),
    (tenant("h-generation-neg", eab={"rotationGeneration": -1}), "spec.eab.rotationGeneration"),
    (tenant("h-eab-string", eab="x"), "spec.eab"),
    (tenant("h-delegations-huge", delegations=[
        {"name": f"d{i}", "issuer": "local", "csrTemplate": {}} for i in range(101)]),
     "spec.delegations"),
]


@pytest.mark.parametrize(("obj", "field"), SCHEMA_REFUSED,
                         ids=[o["metadata"]["name"] for o, _ in SCHEMA_REFUSED])
def test_the_schema_refuses_naming_the_field(kube: KubeEnv, depot: RepoProcess,
                                             obj: dict[str, Any], field: str) -> None:
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert res.returncode != 0, res.stdout
    assert field in res.stderr, res.stderr


def test_invalid_resources_and_foreign_secrets(kube: KubeEnv, depot: RepoProcess) -> None:
    repo = depot
    fake = base64.b64encode(b"do-not-leak-" + b"k" * 32).decode()
    apply(kube,
          {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "certdepot-kek", "namespace": NS}, "data": {"kek": fake}},
          {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "web-tls", "namespace": NS},
           "data": {"tls.crt": fake, "tls.key": fake}})
    apply(kube,
          certificate("h-star-tld", dnsNames=["*.com"], issuer="local"),
          certificate("h-renew-long", dnsNames=["r.res.test"], issuer="local",
                      renewBefore="30d", lifetime="1d"),
          certificate("h-life-zero", dnsNames=["z.res.test"], issuer="local", lifetime="0"),
          tenant("h-issue-star", issue=["*"]),
          tenant("h-kek", eab={"secretName": "certdepot-kek"}),
          tenant("h-tls", eab={"secretName": "web-tls"}),
          certificate("h-good", dnsNames=["good.res.test"], issuer="local",
                      allowedTenants=["h-good-tenant"]),
          tenant("h-good-tenant", download=["shop"]))
    for kind, name, field in (("repositorycertificate", "h-star-tld", "spec.dnsNames.0"),
                              ("repositorycertificate", "h-renew-long", "spec.renewBefore"),
                              ("repositorycertificate", "h-life-zero", "spec.lifetime"),
                              ("repositorytenant", "h-issue-star", "spec.issue.0")):
        obj = wait_condition(kube, kind, name, NS, status="False", reason="Invalid",
                             proc=repo.proc)
        assert ready_condition(obj)["message"].startswith(field), ready_condition(obj)
    for name in ("h-kek", "h-tls"):
        wait_condition(kube, "repositorytenant", name, NS, status="False",
                       reason="SecretConflict", proc=repo.proc)
    wait_condition(kube, "repositorytenant", "h-good-tenant", NS, status="True",
                   proc=repo.proc)
    wait_condition(kube, "repositorycertificate", "h-good", NS, status="True",
                   proc=repo.proc)
    kek = get(kube, "secret", "certdepot-kek", NS)
    assert kek is not None and set(kek["data"]) == {"kek"}
    assert base64.b64decode(kek["data"]["kek"]).decode().startswith("do-not-leak-")
    tls = get(kube, "secret", "web-tls", NS)
    assert tls is not None and set(tls["data"]) == {"tls.crt", "tls.key"}
    for name in ("h-kek", "h-tls"):
        obj = get(kube, "repositorytenant", name, NS)
        assert obj is not None and "do-not-leak" not in str(obj)
    log = Path(repo.proc.log_path).read_text()
    assert "Traceback" not in log and "do-not-leak" not in log, log[-3000:]


def test_an_unexpected_error_in_one_resource_leaves_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a resource trips over (here a reference check raising KeyError for it),
    it alone is Invalid."""
    from certdepot.repository.config import Config

    real = Config.check_references

    def tripping(self: Config) -> None:
        if any(t.name == "odd" for t in self.tenants):
            raise KeyError("odd")
        real(self)

    monkeypatch.setattr(Config, "check_references", tripping)
    merged = merge(file_config(), [], [Declared("odd", {}), Declared("fine", {})])
    assert merged.tenants["odd"].reason == INVALID
    assert merged.tenants["odd"].message == "spec: not usable (KeyError)"
    assert merged.tenants["fine"].reason == ACCEPTED
