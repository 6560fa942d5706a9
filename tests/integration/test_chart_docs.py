"""docs/install.md does not rot: its values render with the chart and its manifests are
accepted by the real API server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart_helm import Helm

from certdepot.repository.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install.md"
CHART = ROOT / "charts" / "certdepot"


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    nxt = re.search(r"^#{2,3} ", text[start + len(title):], re.M)
    return text[start:start + len(title) + (nxt.start() if nxt else len(text))]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-docs"))


def _render(helm: Helm, tmp_path: Path, values: str, *args: str) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    return helm.template("--values", str(path), *args)


def test_central_repository_values_render_a_valid_configuration(helm: Helm,
                                                                 tmp_path: Path) -> None:
    values = _blocks(_section("### Central repository cluster"), "yaml")[0]
    objs = _render(helm, tmp_path, values)
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    config = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), "docs/install.md")
    assert config.base_url == "https://depot.example.com"
    assert config.tenant("cluster-eu-1") is not None
    assert config.listeners.https is not None and config.listeners.https.cert is not None


def test_consumer_only_commands_install_the_operator_alone(helm: Helm) -> None:
    commands = _blocks(_section("### Consumer-only cluster"), "sh")[0]
    sets = re.findall(r"--set (\S+)", commands)
    assert "repository.enabled=false" in sets
    args = [a for s in sets for a in ("--set", s)]
    kinds = {o["kind"] for o in helm.template(*args)}
    assert "Deployment" in kinds and "ConfigMap" not in kinds


def test_consumer_only_repository_manifest_is_accepted(kube: Any, crds_applied: list[str]) -> None:
    commands = _blocks(_section("### Consumer-only cluster"), "sh")[1]
    match = re.search(r"<<'YAML'\n(.*?)\nYAML", commands, re.S)
    assert match, commands
    manifest = match.group(1).replace("<eab-kid>", "kid-1")
    assert yaml.safe_load(manifest)["kind"] == "ClusterCertificateRepository"
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 0, proc.stderr


def test_credentials_example_renders(helm: Helm, tmp_path: Path) -> None:
    values = _blocks(_section("### Credentials for the configuration"), "yaml")[0]
    objs = _render(helm, tmp_path, values)
    secret = next(o for o in objs if o["metadata"]["name"].endswith("-credentials"))
    assert set(secret["stringData"]) == {"zerossl-eab-hmac", "tsig"}
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert "<HMAC key>" not in cm["data"]["config.yaml"], "a credential leaked into the ConfigMap"
