"""cert-manager's pinned controller and CRDs: lookup order, checksum, stamp, asset folder."""

from __future__ import annotations

import hashlib
import lzma
import stat
from pathlib import Path

import pytest

from certdepot.testenv import binaries
from certdepot.testenv import certmanager_assets as cm
from certdepot.testenv import provision as prov

FAKE_BINARY = b"#!/bin/sh\necho fake cert-manager controller\n"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(prov.env_var(cm.CONTROLLER), raising=False)
    monkeypatch.delenv(cm.CRDS_ENV, raising=False)
    path = tmp_path / "cache"
    monkeypatch.setenv("CERTDEPOT_CACHE", str(path))
    return path


@pytest.fixture
def assets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An asset folder laid out like shared/assets/cert-manager-<version>/."""
    folder = tmp_path / "shared" / "assets" / f"cert-manager-{cm.CERT_MANAGER_VERSION}"
    folder.mkdir(parents=True)
    (folder / "controller.xz").write_bytes(lzma.compress(FAKE_BINARY))
    digest = hashlib.sha256(FAKE_BINARY).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  controller\n")
    for name in cm.CRD_FILES:
        (folder / name).write_text(f"# {name}\n")
    monkeypatch.setattr(cm, "PREBUILT_SHA256", digest)
    monkeypatch.setattr(cm, "asset_dir", lambda: folder)
    return folder


def test_missing_controller_says_how_to_get_it(cache: Path) -> None:
    assert prov.env_var(cm.CONTROLLER) == "TEST_ASSET_CERT_MANAGER_CONTROLLER"
    with pytest.raises(prov.MissingBinaryError) as info:
        binaries.binary(cm.CONTROLLER)
    text = str(info.value)
    assert "make provision" in text and "TEST_ASSET_CERT_MANAGER_CONTROLLER" in text
    assert cm.CRDS_ENV in text and cm.CERT_MANAGER_VERSION in text
    with pytest.raises(prov.MissingBinaryError, match="CRDs"):
        cm.crd_files()


def test_provision_from_assets_checks_and_stamps(cache: Path, assets: Path) -> None:
    res = cm.provision_cert_manager(log=lambda _: None)
    assert res.source == "cache"
    path = cm.controller_binary()
    assert path.read_bytes() == FAKE_BINARY
    assert path.stat().st_mode & stat.S_IXUSR
    assert binaries.binary(cm.CONTROLLER) == path
    assert [p.name for p in cm.crd_files()] == list(cm.CRD_FILES)
    stamp = path.with_name(cm.CONTROLLER + ".stamp").read_text()
    assert cm.CERT_MANAGER_VERSION in stamp and str(assets) in stamp
    # Idempotent: a current cache is left alone.
    before = path.stat().st_mtime_ns
    cm.provision_cert_manager(log=lambda _: None)
    assert path.stat().st_mtime_ns == before
    # A stamp for another version is stale until provisioned again.
    path.with_name(cm.CONTROLLER + ".stamp").write_text("cert-manager v1.0.0 cmd/controller\n")
    assert cm.resolve_controller().source == "stale"
    with pytest.raises(prov.MissingBinaryError, match="old pin"):
        cm.controller_binary()


def test_checksum_mismatch_is_refused(cache: Path, assets: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A binary that does not match SHA256SUMS (e.g. a truncated copy) is not cached.
    (assets / "controller.xz").write_bytes(lzma.compress(FAKE_BINARY + b"tampered"))
    with pytest.raises(prov.ProvisionError, match="sha256"):
        cm.provision_cert_manager(log=lambda _: None)
    assert not (cache / "bin" / cm.CONTROLLER).exists()
    # A SHA256SUMS that lists another build than the pinned one is refused too.
    (assets / "SHA256SUMS").write_text(f"{'0' * 64}  controller\n")
    with pytest.raises(prov.ProvisionError, match="pinned"):
        cm.provision_cert_manager(log=lambda _: None)


def test_overrides_win(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own" / "controller"
    own.parent.mkdir()
    own.write_bytes(FAKE_BINARY)
    own.chmod(0o755)
    crds = tmp_path / "own-crds"
    crds.mkdir()
    for name in cm.CRD_FILES:
        (crds / name).write_text("")
    monkeypatch.setenv("TEST_ASSET_CERT_MANAGER_CONTROLLER", str(own))
    monkeypatch.setenv(cm.CRDS_ENV, str(crds))
    assert cm.controller_binary() == own
    assert cm.crds_dir() == crds
    res = cm.provision_cert_manager(log=lambda _: None)
    assert res.source == "TEST_ASSET_CERT_MANAGER_CONTROLLER"
    assert not (cache / "bin" / cm.CONTROLLER).exists()


def test_asset_folder_beside_checkout_or_a_parent(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # CI: <dir>/checkout with <dir>/shared beside it; a worktree: <dir>/wt/name.
    folder = tmp_path / "shared" / "assets" / f"cert-manager-{cm.CERT_MANAGER_VERSION}"
    folder.mkdir(parents=True)
    (folder / "controller.xz").write_bytes(b"")
    for checkout in (tmp_path / "checkout", tmp_path / "wt" / "name"):
        monkeypatch.setattr(prov, "_source_checkout", lambda c=checkout: c)
        assert cm.asset_dir() == folder
    monkeypatch.setattr(prov, "_source_checkout", lambda: None)
    assert cm.asset_dir() is None
