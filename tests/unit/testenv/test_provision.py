"""Binary resolution order, stamps, and the no-Go message — without building anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from certdepot.testenv import gobuild
from certdepot.testenv import provision as prov


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in prov.BINARIES:
        monkeypatch.delenv(prov.env_var(name), raising=False)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CERTDEPOT_CACHE", str(cache))
    return cache


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_env_var_names() -> None:
    assert prov.env_var("kube-apiserver") == "TEST_ASSET_KUBE_APISERVER"
    assert prov.env_var("pebble-challtestsrv") == "TEST_ASSET_PEBBLE_CHALLTESTSRV"
    assert set(prov.BINARIES) == {
        "kube-apiserver", "kubectl", "etcd", "pebble", "pebble-challtestsrv", "helm",
        "prometheus", "promtool",
    }


def test_missing_binary_says_how_to_get_it(clean_env: Path) -> None:
    with pytest.raises(prov.MissingBinaryError) as info:
        prov.binary("etcd")
    text = str(info.value)
    assert "make provision" in text
    assert "TEST_ASSET_ETCD" in text and "KUBEBUILDER_ASSETS" in text


def test_cached_binary_needs_a_matching_stamp(clean_env: Path) -> None:
    path = _exe(clean_env / "bin" / "pebble")
    assert prov.resolve("pebble").source == "stale"
    with pytest.raises(prov.MissingBinaryError, match="old pin"):
        prov.binary("pebble")
    (clean_env / "bin" / "pebble.stamp").write_text(prov.BINARIES["pebble"].stamp("pebble"))
    assert prov.binary("pebble") == path
    # A different pin (as after editing PEBBLE_VERSION) no longer matches.
    (clean_env / "bin" / "pebble.stamp").write_text("github.com/letsencrypt/pebble/v2@v2.9.0\n")
    assert prov.resolve("pebble").source == "stale"


def test_override_order(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = tmp_path / "assets"
    _exe(assets / "etcd")
    _exe(assets / "kube-apiserver")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert prov.binary("etcd") == assets / "etcd"
    # TEST_ASSET_* wins over KUBEBUILDER_ASSETS, as in controller-runtime's envtest.
    own = _exe(tmp_path / "own" / "etcd")
    monkeypatch.setenv("TEST_ASSET_ETCD", str(own))
    assert prov.binary("etcd") == own
    assert prov.resolve("etcd").source == "TEST_ASSET_ETCD"
    # KUBEBUILDER_ASSETS is only for the envtest binaries.
    assert prov.resolve("helm").source == "missing"


def test_override_must_be_executable(clean_env: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ASSET_HELM", str(tmp_path / "nope"))
    with pytest.raises(prov.MissingBinaryError, match="not an executable"):
        prov.binary("helm")


def test_provision_skips_overridden_binaries_without_go(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = _exe(tmp_path / "pebble")
    monkeypatch.setenv("TEST_ASSET_PEBBLE", str(own))
    monkeypatch.setattr(gobuild, "find_go", lambda: pytest.fail("go must not be needed"))
    result = prov.provision(["pebble"], log=lambda _: None)
    assert result["pebble"].path == own


def test_missing_go_gives_one_clear_message(clean_env: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobuild, "find_go", lambda: None)
    with pytest.raises(prov.ProvisionError) as info:
        prov.provision(["helm", "etcd"], log=lambda _: None)
    text = str(info.value)
    assert "Go >= 1.26" in text and "helm" in text and "etcd" in text
    for var in ("KUBEBUILDER_ASSETS", "TEST_ASSET_PEBBLE", "TEST_ASSET_HELM", "setup-envtest"):
        assert var in text


def test_cache_dir_defaults_to_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTDEPOT_CACHE", raising=False)
    root = Path(prov.__file__).resolve().parents[3]
    assert prov.cache_dir() == root / ".cache" / "testenv"


def test_kubernetes_build_carries_version_and_staging_replaces() -> None:
    kube = prov.BINARIES["kube-apiserver"]
    assert kube.replace_staging
    assert f"-X k8s.io/component-base/version.gitVersion={prov.KUBERNETES_VERSION}" in kube.ldflags
    assert kube.stamp("kubectl") != kube.stamp("kube-apiserver")


def test_staging_replacements_follow_the_published_go_mod(tmp_path: Path) -> None:
    gomod = {"Require": [
        {"Path": "k8s.io/api", "Version": "v0.0.0"},
        {"Path": "k8s.io/klog/v2", "Version": "v2.130.1"},
        {"Path": "k8s.io/client-go", "Version": "v0.0.0"},
        {"Path": "github.com/x/y", "Version": "v0.0.0"},
    ]}
    calls: list[list[str]] = []

    class FakeRun:
        def __call__(self, args: list[str], cwd: Path) -> str:
            import json

            calls.append(args)
            if args[:2] == ["mod", "download"]:
                return json.dumps({"GoMod": "/cache/k8s.mod"})
            return json.dumps(gomod)

    build = prov.GoBuild("k", "k8s.io/kubernetes", "v1.40.3", {"x": "k8s.io/kubernetes/cmd/x"},
                         replace_staging=True)
    got = gobuild.staging_replacements(FakeRun(), build, tmp_path)  # type: ignore[arg-type]
    assert got == ["k8s.io/api=k8s.io/api@v0.40.3", "k8s.io/client-go=k8s.io/client-go@v0.40.3"]
    assert calls[0] == ["mod", "download", "-json", "k8s.io/kubernetes@v1.40.3"]


def test_service_user_is_never_root() -> None:
    from certdepot.testenv.system import service_user

    if os.geteuid() == 0:
        assert service_user("postgres") not in (None, "root")
    else:
        assert service_user("postgres") is None  # run as ourselves


def test_cli_check_reports_sources_and_fails_when_missing(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from certdepot.cli import main

    own = _exe(tmp_path / "helm")
    monkeypatch.setenv("TEST_ASSET_HELM", str(own))
    result = CliRunner().invoke(main, ["dev", "provision", "--check"])
    assert result.exit_code == 1  # the others are missing in an empty cache
    assert "TEST_ASSET_HELM" in result.output and str(own) in result.output
    assert "missing" in result.output
    ok = CliRunner().invoke(main, ["dev", "provision", "--check", "--only", "helm"])
    assert ok.exit_code == 0, ok.output


def test_data_file_needs_its_pinned_stamp(clean_env: Path) -> None:
    name = "servicemonitors-crd.yaml"
    with pytest.raises(prov.MissingBinaryError, match="make provision"):
        prov.data_file(name)
    path = clean_env / "files" / name
    path.parent.mkdir(parents=True)
    path.write_text("kind: CustomResourceDefinition\n")
    stamp = path.with_name(name + ".stamp")
    stamp.write_text("github.com/prometheus-operator/prometheus-operator@v0.1.0/x.yaml\n")
    with pytest.raises(prov.MissingBinaryError, match=prov.PROMETHEUS_OPERATOR_VERSION):
        prov.data_file(name)
    stamp.write_text(prov.FILES[name].stamp())
    assert prov.data_file(name) == path


def test_node_binaries_are_opt_in(clean_env: Path) -> None:
    # `make provision` builds what every test needs; the one-node cluster's binaries are
    # known to resolve()/binary() but only built on request (`provision --node`).
    assert set(prov.NODE_BINARIES) == {
        "kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy", "coredns", "traefik"
    }
    assert not set(prov.NODE_BINARIES) & set(prov.BINARIES)
    with pytest.raises(prov.MissingBinaryError) as info:
        prov.binary("kubelet")
    assert "make provision-node" in str(info.value)
    assert "TEST_ASSET_KUBELET" in str(info.value)
    # Same module and pin as kube-apiserver, but its own stamp per binary.
    assert prov.NODE_BINARIES["kubelet"].version == prov.BINARIES["kube-apiserver"].version
