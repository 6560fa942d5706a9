"""``certdepot repository tenant create|list|rotate|delete`` against a store file (issue 20,
items 5 and 6): non-Kubernetes installs change the store; a tenant that may be a
RepositoryTenant resource is refused unless --store-only, saying why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from repository_testkit import KEK, base_config

from certdepot.repository import cli


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CERTDEPOT_TEST_KEK", KEK)
    path = tmp_path / "repository.yaml"
    path.write_text(yaml.safe_dump(base_config(storage={"url": f"sqlite:///{tmp_path}/r.db"})))
    return path


def _run(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli.repository, ["tenant", *args, "--config", str(config_path)])


def _list(config_path: Path) -> dict[str, Any]:
    r = _run(config_path, "list", "--json")
    assert r.exit_code == 0, r.output
    return {t["name"]: t for t in json.loads(r.output)}


def test_lifecycle(config_path: Path) -> None:
    made = _run(config_path, "create", "team-a")
    assert made.exit_code == 0 and "eab-hmac:" in made.output, made.output
    assert _run(config_path, "create", "team-a").exit_code == 1
    orphan = _run(config_path, "create", "orphan")
    assert "has no policy" in orphan.output  # the warning (stderr is mixed in)
    kid = _list(config_path)["team-a"]["eabKeyId"]
    assert kid and kid in made.output

    rotated = _run(config_path, "rotate", "team-a")
    assert rotated.exit_code == 0 and "accounts already bound stay bound" in rotated.output
    assert _list(config_path)["team-a"]["eabKeyId"] not in (None, kid)
    assert _run(config_path, "rotate", "nobody").exit_code == 1

    table = _run(config_path, "list").output.splitlines()
    assert table[0].split()[:3] == ["NAME", "POLICY", "ACCOUNTS"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"orphan", "team-a", "team-b"}
    assert " NONE " in rows["orphan"] and "no credentials" in rows["team-b"]

    gone = _run(config_path, "delete", "team-a")
    assert gone.exit_code == 0 and "0 account(s) deactivated" in gone.output, gone.output
    assert "still has a policy" in gone.output
    assert _list(config_path)["team-a"]["eabKeyId"] is None
    assert _run(config_path, "delete", "team-a").exit_code == 1
    assert _run(config_path, "create", "a b").exit_code == 2


def test_resources_are_the_source_of_truth(config_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(config_path, "create", "declared").exit_code == 0
    monkeypatch.setattr(cli, "resources_in_force", lambda config: True)
    for args in (("rotate", "declared"), ("delete", "declared"), ("create", "other")):
        r = _run(config_path, *args)
        assert r.exit_code == 2, r.output
        assert "RepositoryTenant" in r.output and "--store-only" in r.output
    # A tenant of the file is the file's: unaffected.
    assert _run(config_path, "create", "team-a").exit_code == 0
    assert _run(config_path, "rotate", "declared", "--store-only").exit_code == 0
    assert _run(config_path, "delete", "declared", "--store-only").exit_code == 0
    r = CliRunner().invoke(cli.repository, ["renew", "declared", "--config", str(config_path)])
    assert r.exit_code == 2 and "RepositoryCertificate" in r.output
