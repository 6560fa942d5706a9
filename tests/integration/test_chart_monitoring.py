"""The chart's alert rules and Grafana dashboard against real metrics.

The PrometheusRule and the dashboard ConfigMap are rendered by the real helm; ``promtool
check rules`` checks the rules; then a real Prometheus (provisioned from its Go module)
scrapes a real operator and repository and evaluates the rendered rules, with the waits
(``for``) set to zero, until the alerts that the world was built to trigger fire: a
CertificateDownload not Ready, one past its renewal time, a repository certificate whose
upstream CA cannot be reached; then, after a rotation through the admin API while a consumer
holds the old serial, the superseded-serial alert. Every dashboard query is run against that
Prometheus too.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from repository_harness import base_config
from test_chart_helm import Helm
from test_kubectl_plugin import admin_config, laggard, rotate
from test_operator_support import (
    Setup,
    apply,
    local_ca_issuer,
    namespace,
    repository_and_operator,
    wait_condition,
    wait_for,
)

from certdepot.testenv import procs
from certdepot.testenv.provision import binary

NAMES = ["metrics.example.test"]
REPO = "monitoring-central"
SUPERSEDED = "certdepot_repository_certificate_consumers_superseded"
ENABLED = [
    "--set", "monitoring.prometheusRule.enabled=true",
    "--set", "monitoring.grafanaDashboard.enabled=true",
]
# Zero waits: the test sees each alert fire as soon as its expression holds.
IMMEDIATE = [
    *ENABLED,
    "--set", "monitoring.prometheusRule.alerts.certificateRenewalOverdue.for=0s",
    "--set", "monitoring.prometheusRule.alerts.certificateDownloadNotReady.minutes=0",
    "--set", "monitoring.prometheusRule.alerts.repositoryRenewalsFailing.for=0s",
    "--set", "monitoring.prometheusRule.alerts.repositoryRenewalsFailing.failures=1",
    "--set", "monitoring.prometheusRule.alerts.consumersSuperseded.for=0s",
]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-monitoring"))


def _one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, [o["kind"] for o in objs]
    return found[0]


def rules_file(helm: Helm, path: Path, *args: str) -> Path:
    rule = _one(helm.template(*args), "PrometheusRule")
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("promtool")), *args], capture_output=True, text=True,
                          timeout=60)


def test_monitoring_is_off_by_default(helm: Helm) -> None:
    kinds = [o["kind"] for o in helm.template()]
    assert "PrometheusRule" not in kinds
    assert not [o for o in helm.template() if o["kind"] == "ConfigMap"
                and o["metadata"]["name"].endswith("-dashboard")]


def test_promtool_accepts_the_rules_and_refuses_a_broken_one(helm: Helm, tmp_path: Path) -> None:
    path = rules_file(helm, tmp_path / "rules.yaml", *ENABLED)
    res = promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 4 rules found" in res.stdout
    # The check can fail: the same file with one expression broken is refused.
    broken = path.read_text().replace("< time()", "< time(", 1)
    (tmp_path / "broken.yaml").write_text(broken)
    bad = promtool("check", "rules", str(tmp_path / "broken.yaml"))
    assert bad.returncode != 0 and "parse error" in bad.stdout + bad.stderr


def test_alerts_can_be_tuned_and_switched_off(helm: Helm) -> None:
    rule = _one(helm.template(
        *ENABLED,
        "--set", "monitoring.prometheusRule.alerts.certificateDownloadNotReady.minutes=42",
        "--set", "monitoring.prometheusRule.alerts.consumersSuperseded.enabled=false",
        "--set", "monitoring.prometheusRule.additionalAlertLabels.team=platform",
        "--set", "monitoring.prometheusRule.labels.release=prom"), "PrometheusRule")
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert "CertdepotConsumersOnSupersededSerial" not in rules
    assert rules["CertdepotCertificateDownloadNotReady"]["for"] == "42m"
    assert all(r["labels"]["team"] == "platform" for r in rules.values())
    assert rule["metadata"]["labels"]["release"] == "prom"


def test_dashboard_configmap_is_what_the_grafana_sidecar_loads(helm: Helm) -> None:
    cm = _one([o for o in helm.template(*ENABLED, "--set",
                                        "monitoring.grafanaDashboard.annotations.grafana_folder=tls")
               if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")],
              "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "tls"
    dashboard = json.loads(cm["data"]["certdepot.json"])
    assert dashboard["uid"] == "certdepot-overview"
    assert all(t["expr"] for p in _panels(dashboard) for t in p["targets"])


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p.get("targets")]


# --- a real Prometheus over a real operator and repository ---------------------------------


@dataclass
class Prometheus:
    proc: procs.ManagedProcess
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        qs = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:
            doc: dict[str, Any] = json.load(resp)
        assert doc["status"] == "success", doc
        return doc

    def result(self, expr: str) -> list[dict[str, Any]]:
        return list(self.query(expr)["data"]["result"])

    def firing(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for series in self.result('ALERTS{alertstate="firing"}'):
            out.setdefault(series["metric"]["alertname"], []).append(series["metric"])
        return out


@dataclass
class World:
    setup: Setup
    prometheus: Prometheus
    rules: Path


def prometheus_config(s: Setup, rules: Path) -> dict[str, Any]:
    repo_target = s.repo.base_url.removeprefix("https://")
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            # honor_labels as in the chart's operator ServiceMonitor: the metrics' own
            # namespace label is the resource's.
            {"job_name": "certdepot-operator", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{s.op.metrics_port}"]}]},
            {"job_name": "certdepot-repository", "scheme": "https",
             "tls_config": {"ca_file": str(s.repo.ca_path)},
             "static_configs": [{"targets": [repo_target]}]},
        ],
    }


@pytest.fixture(scope="module")
def world(helm: Helm, kube: Any, crds_applied: list[str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("monitoring")
    root, issuer = local_ca_issuer(workdir, "monitoring-root")
    port = procs.free_port()
    # An upstream CA that is not there: a closed port on loopback refuses every renewal.
    upstream = {"name": "upstream", "type": "acme",
                "directory": f"https://127.0.0.1:{procs.free_port()}/directory"}
    cfg = base_config(
        workdir, port, issuers=[issuer, upstream],
        certificates=[{"name": "metrics", "dnsNames": NAMES, "issuer": "local"},
                      {"name": "unreachable", "dnsNames": ["down.example.test"],
                       "issuer": "upstream"}],
        tenants=[{"name": "monitoring-cluster", "download": ["metrics"]},
                 {"name": "monitoring-laggard", "download": ["metrics"]}],
        admin=admin_config(workdir),
    )
    repository = {"name": REPO, "namespace": None, "secret_name": "monitoring-eab",
                  "secret_namespace": "certdepot",
                  "namespaceSelector": {"matchLabels": {"monitoring": "yes"}}}
    namespaces = [namespace("certdepot", {}), namespace("monitoring-a", {"monitoring": "yes"}),
                  namespace("monitoring-b", {})]
    rules = rules_file(helm, workdir / "rules.yaml", *IMMEDIATE)
    with repository_and_operator(kube, workdir, cfg, port, tenant="monitoring-cluster",
                                 namespaces=namespaces, repository=repository,
                                 operator_name="monitoring-operator") as (repo, op):
        s = Setup(kube, repo, root, workdir, op)
        apply(kube, download("good", "monitoring-a"), download("refused", "monitoring-b"),
              # renewBefore all but 10 s of the 24 h lifetime: due 10 s after issuance, and
              # the repository keeps serving the same certificate, so it stays overdue.
              download("overdue", "monitoring-a", renewBefore="23h59m50s"))
        wait_condition(kube, "certificatedownload", "good", "monitoring-a", status="True",
                       proc=op.proc)
        web = procs.free_port()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(s, rules)))
        proc = procs.start("prometheus", [
            str(binary("prometheus")), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}",
        ], log_path=workdir / "prometheus.log")
        try:
            proc.wait_for_port(web, timeout=60)
            proc.wait_for_url(f"http://127.0.0.1:{web}/-/ready", timeout=60)
            yield World(s, Prometheus(proc, f"http://127.0.0.1:{web}"), rules)
        finally:
            proc.stop()


def download(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository", "name": REPO},
                 "dnsNames": NAMES, "secretName": f"{name}-tls", **spec},
    }


def test_both_targets_are_scraped(world: World) -> None:
    p = world.prometheus
    wanted = {"certdepot-operator", "certdepot-repository"}

    def jobs_up() -> set[str] | None:
        jobs = {r["metric"]["job"] for r in p.result("up == 1")}
        return jobs if jobs == wanted else None

    try:
        wait_for("both scrape targets up", jobs_up, timeout=60, proc=p.proc)
    except AssertionError:
        with urllib.request.urlopen(f"{p.url}/api/v1/targets", timeout=10) as resp:
            raise AssertionError(resp.read().decode()) from None


def test_the_alerts_fire_for_what_is_wrong_and_only_for_that(world: World) -> None:
    p, op = world.prometheus, world.setup.op
    expected = {
        "CertdepotCertificateDownloadNotReady": {("monitoring-b", "refused")},
        "CertdepotCertificateRenewalOverdue": {("monitoring-a", "overdue")},
        "CertdepotRepositoryRenewalsFailing": {("", "unreachable")},
    }

    def ours() -> dict[str, set[tuple[str, str]]]:
        # The API server is shared by the session: other modules' objects are there too,
        # and rightly alerted on; this module judges its own namespaces and certificates.
        return {alert: {(a.get("namespace", ""), a.get("name", "")) for a in series
                        if a.get("namespace", "monitoring-").startswith("monitoring-")}
                for alert, series in p.firing().items()}

    def all_fired() -> dict[str, set[tuple[str, str]]] | None:
        firing = ours()
        done = all(firing.get(alert, set()) >= want for alert, want in expected.items())
        return firing if done else None

    firing = wait_for("the three alerts to fire", all_fired, timeout=120, proc=op.proc)
    assert {k: v for k, v in firing.items() if v} == expected
    assert all(a["severity"] for series in p.firing().values() for a in series)


def test_consumers_on_a_superseded_serial_fire_after_a_rotation(world: World) -> None:
    """Runs after the test above (which judges the other alerts): the rotation leaves a
    consumer that never fetches again on the revoked serial, and the alert names it."""
    p, s = world.prometheus, world.setup
    alert = "CertdepotConsumersOnSupersededSerial"
    rules = yaml.safe_load(world.rules.read_text())["groups"][0]["rules"]
    [rule] = [r for r in rules if r["alert"] == alert]

    def metrics_gauge() -> list[dict[str, Any]] | None:
        found = p.result(f'{SUPERSEDED}{{name="metrics"}}')
        return found or None

    # Every consumer holds the one serial the repository has: exported, zero, silent.
    [before] = wait_for("the superseded gauge scraped", metrics_gauge, timeout=60, proc=p.proc)
    assert float(before["value"][1]) == 0 and p.result(rule["expr"]) == []
    held = laggard(s.repo, s.workdir, "monitoring-laggard", NAMES)
    done = rotate(s.repo, "metrics")
    assert done["revokedSerial"] == held

    def fired() -> list[dict[str, str]] | None:
        series = [a for a in p.firing().get(alert, []) if a.get("name") == "metrics"]
        return series or None

    [series] = wait_for(f"{alert} for the rotated certificate", fired, timeout=120,
                        proc=p.proc)
    assert series["severity"]
    # At least the laggard, which never fetches again, stays on the revoked serial.
    [after] = p.result(f'{SUPERSEDED}{{name="metrics"}}')
    assert float(after["value"][1]) >= 1


def test_every_dashboard_query_runs_on_the_real_metrics(world: World, helm: Helm) -> None:
    p = world.prometheus
    cm = next(o for o in helm.template(*ENABLED) if o["kind"] == "ConfigMap"
              and o["metadata"]["name"].endswith("-dashboard"))
    dashboard = json.loads(cm["data"]["certdepot.json"])
    names = {r["metric"]["__name__"] for r in p.result('{__name__=~"certdepot_.+"}')}
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            p.query(expr)  # parses and evaluates (status success)
            for metric in set(re.findall(r"certdepot_[a-z_]+", expr)):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                exported = metric in names or any(n.startswith(base) for n in names)
                assert exported, (
                    f"panel {panel['title']!r} uses {metric}, which neither component exports")
