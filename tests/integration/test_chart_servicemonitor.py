"""The chart's ServiceMonitors against the real Prometheus Operator schema.

The ServiceMonitor CRD (pinned in certdepot.testenv.provision.FILES, fetched by `make
provision` through the Go module proxy) is installed into the test API server, and every
ServiceMonitor the chart can render is applied for real and read back. A deliberately
broken one must be refused, so the check can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart_helm import VALUE_SETS, Helm

from certdepot.testenv.provision import data_file

CRD_NAME = "servicemonitors.monitoring.coreos.com"
NAMESPACE = "chart-monitors"

# Every way the chart renders a ServiceMonitor: both components, plain and with the
# repository's verified-TLS settings, extra labels, and every value set.
RENDERINGS = {
    **{f"{name}-both": ["--values", str(path),
                        "--set", "operator.serviceMonitor.enabled=true",
                        "--set", "repository.serviceMonitor.enabled=true"]
       for name, path in VALUE_SETS.items()},
    "repository-verified-tls": [
        "--values", str(VALUE_SETS["ha"]),
        "--set", "repository.serviceMonitor.enabled=true",
        "--set", "repository.serviceMonitor.labels.release=prom",
        "--set", "repository.serviceMonitor.tlsConfig.ca.secret.name=ca",
        "--set", "repository.serviceMonitor.tlsConfig.ca.secret.key=ca.crt",
        "--set", "operator.serviceMonitor.enabled=true",
        "--set", "operator.serviceMonitor.labels.release=prom",
    ],
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def monitors_crd(kube: Any) -> Iterator[str]:
    crd = data_file("servicemonitors-crd.yaml")
    kube.kubectl("apply", "--server-side", "-f", str(crd))
    kube.wait_for_crds([CRD_NAME])
    kube.kubectl("create", "namespace", NAMESPACE)
    try:
        yield NAMESPACE
    finally:
        kube.kubectl("delete", "servicemonitors", "--all", "-n", NAMESPACE, check=False)
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _monitors(helm: Helm, args: list[str]) -> list[dict[str, Any]]:
    objs = helm.template(*args, namespace=NAMESPACE)
    return [o for o in objs if o["kind"] == "ServiceMonitor"]


def test_the_pinned_crd_is_the_servicemonitor_schema() -> None:
    doc = yaml.safe_load(Path(data_file("servicemonitors-crd.yaml")).read_text())
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["metadata"]["name"] == CRD_NAME
    served = [v for v in doc["spec"]["versions"] if v["served"]]
    assert [v["name"] for v in served] == ["v1"]


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_every_rendered_service_monitor_is_accepted(helm: Helm, kube: Any, monitors_crd: str,
                                                    rendering: str) -> None:
    monitors = _monitors(helm, RENDERINGS[rendering])
    value_set = rendering.removesuffix("-both")
    if value_set in VALUE_SETS:
        # One per component the value set runs (both are on unless it switches one off).
        values = yaml.safe_load(VALUE_SETS[value_set].read_text()) or {}
        running = [c for c in ("operator", "repository")
                   if (values.get(c) or {}).get("enabled", True)]
        assert len(monitors) == len(running), [m["metadata"]["name"] for m in monitors]
    assert monitors, "this rendering should produce ServiceMonitors"
    proc = kube.kubectl("apply", "-o", "name", "-f", "-",
                        input=yaml.safe_dump_all(monitors), check=False)
    assert proc.returncode == 0, proc.stderr
    for monitor in monitors:
        name = monitor["metadata"]["name"]
        stored = yaml.safe_load(kube.kubectl("get", "servicemonitor", name, "-n", monitors_crd,
                                             "-o", "yaml").stdout)
        # Structural pruning drops unknown fields silently: what we rendered must survive.
        assert stored["spec"] == monitor["spec"], name


def test_a_broken_service_monitor_is_refused(helm: Helm, kube: Any, monitors_crd: str) -> None:
    [monitor] = _monitors(helm, ["--set", "operator.serviceMonitor.enabled=true",
                                 "--set", "repository.enabled=false"])
    monitor["metadata"]["name"] = "broken"
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"  # the schema allows http(s) only
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-",
                        input=yaml.safe_dump(monitor), check=False)
    assert proc.returncode != 0
    assert "scheme" in proc.stderr, proc.stderr
