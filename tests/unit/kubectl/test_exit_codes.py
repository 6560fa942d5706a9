"""Exit codes scripts rely on, where no API server is needed to see them."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from certdepot.kubectl.cli import NOT_FOUND, UNAVAILABLE, USAGE, plugin
from certdepot.testenv import procs


def test_unreachable_api_server_is_4_and_usage_is_2(tmp_path: Path) -> None:
    closed = procs.free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{closed}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "n"}}],
    }))
    runner = CliRunner()
    res = runner.invoke(plugin, ["status", "cdl", "web", "--kubeconfig", str(kubeconfig)])
    assert res.exit_code == UNAVAILABLE and "cannot reach the API server" in res.output
    assert "n/web" in res.output  # the context's namespace is the default
    assert runner.invoke(plugin, ["status", "pods", "x"]).exit_code == USAGE
    assert runner.invoke(plugin, ["status", "cdl"]).exit_code == USAGE
    missing = runner.invoke(plugin, ["inspect", "secret", "s", "--kubeconfig",
                                     str(tmp_path / "absent")])
    assert missing.exit_code == UNAVAILABLE and "configuration" in missing.output
    assert NOT_FOUND == 3


def test_inventory_usage_and_an_unreachable_repository(tmp_path: Path) -> None:
    runner = CliRunner()
    nowhere = runner.invoke(plugin, ["inventory"], env={"CERTDEPOT_ADMIN_TOKEN": "t" * 32})
    assert nowhere.exit_code == USAGE and "--repository" in nowhere.output
    no_token = runner.invoke(plugin, ["inventory", "--url", "https://127.0.0.1:1"],
                             env={"CERTDEPOT_ADMIN_TOKEN": ""})
    assert no_token.exit_code == USAGE and "no admin token" in no_token.output
    closed = procs.free_port()
    down = runner.invoke(plugin, ["inventory", "--url", f"https://127.0.0.1:{closed}/directory"],
                         env={"CERTDEPOT_ADMIN_TOKEN": "t" * 32})
    assert down.exit_code == UNAVAILABLE and "cannot reach the repository" in down.output
