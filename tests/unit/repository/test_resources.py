"""Merging RepositoryCertificate / RepositoryTenant resources with the file (resources.py)
and reloading the file (livereload.py): which wins, what is rejected and why."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import yaml

from certdepot.repository import livereload
from certdepot.repository.config import Config, load_config, parse_config
from certdepot.repository.resourcecli import effective, resources_in_charge
from certdepot.repository.resources import CONFLICT, INVALID, Declared, merge


def file_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "baseUrl": "https://127.0.0.1:8443",
        "listeners": {"https": {"selfSigned": True}},
        "keyEncryptionKey": {"env": "X"},
        "issuers": [{"name": "local", "type": "local-ca"},
                    {"name": "other", "type": "local-ca"}],
        "certificates": [{"name": "shop", "dnsNames": ["shop.example.test"],
                          "issuer": "local"}],
        "tenants": [{"name": "team-a", "download": ["shop"]}],
    }
    data.update(extra)
    return data


def file_config(**extra: Any) -> Config:
    return parse_config(file_data(**extra))


def test_resources_add_certificates_and_tenants() -> None:
    merged = merge(file_config(),
                   [Declared("blog", {"dnsNames": ["Blog.Example.Test"], "issuer": "other",
                                      "keyType": "rsa-2048", "renewBefore": "10d",
                                      "allowedTenants": ["team-a", "team-b"]})],
                   [Declared("team-b", {"issue": ["*.b.example.test"], "download": ["shop"]})])
    cfg = merged.config
    blog = cfg.certificate("blog")
    assert blog is not None and blog.dns_names == ["blog.example.test"]
    assert blog.issuer == "other" and blog.key_type == "rsa-2048"
    assert blog.renew_before is not None and blog.renew_before.days == 10
    team_b = cfg.tenant("team-b")
    assert team_b is not None and team_b.issue == ["*.b.example.test"]
    assert sorted(team_b.download) == ["blog", "shop"]
    team_a = cfg.tenant("team-a")
    assert team_a is not None and team_a.download == ["shop", "blog"]
    assert all(v.accepted for v in [*merged.certificates.values(), *merged.tenants.values()])


def test_the_file_wins_a_conflict() -> None:
    file = file_config()
    merged = merge(file, [Declared("shop", {"dnsNames": ["evil.example.test"],
                                            "issuer": "local"})],
                   [Declared("team-a", {"download": ["shop"], "issue": ["*"]})])
    assert merged.certificates["shop"].reason == CONFLICT
    assert "also defined in the configuration file" in merged.certificates["shop"].message
    assert merged.tenants["team-a"].reason == CONFLICT
    shop = merged.config.certificate("shop")
    assert shop is not None and shop.dns_names == ["shop.example.test"]
    team_a = merged.config.tenant("team-a")
    assert team_a is not None and team_a.issue == []


def test_invalid_resources_are_left_out_with_a_reason() -> None:
    merged = merge(file_config(),
                   [Declared("bad-issuer", {"dnsNames": ["x.example.test"], "issuer": "nope"}),
                    Declared("bad-name", {"dnsNames": ["not a name"], "issuer": "local"}),
                    Declared("good", {"dnsNames": ["g.example.test"], "issuer": "local"})],
                   [Declared("t", {"download": ["bad-issuer"]})])
    v = merged.certificates
    assert v["bad-issuer"].reason == INVALID
    assert "spec.issuer: unknown issuer 'nope'" in v["bad-issuer"].message
    assert v["bad-name"].reason == INVALID
    assert "spec.dnsNames: 'not a name'" in v["bad-name"].message
    assert v["good"].accepted
    assert merged.tenants["t"].reason == INVALID
    assert "spec.download: unknown certificate 'bad-issuer'" in merged.tenants["t"].message
    assert [c.name for c in merged.config.certificates] == ["shop", "good"]
    assert merged.config.tenant("t") is None


def test_resource_only_fields_never_reach_the_config() -> None:
    merged = merge(file_config(), [], [Declared("t", {"eab": {"rotationGeneration": 3}})])
    assert merged.tenants["t"].accepted


def test_restart_only_settings_keep_their_running_value() -> None:
    running = file_config()
    new = file_config(baseUrl="https://elsewhere.example.test", tenants=[])
    kept = livereload.keep_restart_only(running, new)
    assert kept.base_url == running.base_url
    assert kept.tenants == []


def test_an_invalid_file_is_rejected_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "repository.yaml"
    data = file_data()
    path.write_text(yaml.safe_dump(data))
    counted: list[tuple[str, str]] = []
    got: list[Config] = []
    repo = types.SimpleNamespace(count_reload=lambda s, r: counted.append((s, r)),
                                 config=file_config())
    watcher = livereload.FileWatcher(repo, path, got.append)  # type: ignore[arg-type]
    assert not asyncio.run(watcher.check())  # unchanged
    data["tenants"][0]["download"] = ["missing"]
    path.write_text(yaml.safe_dump(data))
    assert not asyncio.run(watcher.check())
    assert counted == [("file", "rejected")] and got == []
    data["tenants"][0]["download"] = []
    path.write_text(yaml.safe_dump(data))
    assert asyncio.run(watcher.check())
    assert got[0].tenant("team-a") is not None and got[0].source == path
    assert load_config(path).tenants[0].download == []


def test_the_cli_note_only_with_resources() -> None:
    assert resources_in_charge(file_config()) is None
    note = resources_in_charge(file_config(kubernetes={"resources": True, "namespace": "ns"}))
    assert note is not None and "resources in ns are the source of truth" in note
    seen: list[str] = []
    assert effective(file_config(), seen.append) == file_config() and seen == []


def test_odd_delegation_input_is_invalid_not_a_crash() -> None:
    merged = merge(file_config(), [], [
        Declared("odd", {"delegations": [{"name": "d", "issuer": "local",
                                          "csrTemplate": {"keyTypes": "not-a-list"}}]}),
        Declared("fine", {"issue": ["*.example.test"]})])
    assert merged.tenants["odd"].reason == INVALID
    assert merged.tenants["fine"].accepted


async def test_install_swaps_the_snapshot_and_rebuilds_only_changed_issuers() -> None:
    from repository_testkit import base_config, make_config

    from certdepot.repository.bootstrap import build_repo

    repo = build_repo(make_config())
    try:
        counted: list[tuple[str, str]] = []
        repo.count_reload = lambda s, r: counted.append((s, r))
        local, imported = repo.issuers["local"], repo.issuers["imported"]
        cfg = base_config()
        cfg["issuers"] = [{"name": "local", "type": "local-ca", "lifetime": "5d"},
                          {"name": "imported", "type": "imported"},
                          {"name": "extra", "type": "local-ca"}]
        cfg["tenants"][1]["issue"] = []
        new = parse_config(cfg)
        livereload.install(repo, new, "file")
        assert repo.config is new and repo.config_changed.is_set()
        assert repo.issuers["imported"] is imported  # unchanged: the running object
        assert repo.issuers["local"] is not local  # changed definition: built again
        assert set(repo.issuers) == {"local", "imported", "extra"}
        team_b = repo.config.tenant("team-b")
        assert team_b is not None and team_b.issue == []
        assert counted == [("file", "applied")]
    finally:
        repo.store.close()
