"""Provision the pinned binaries that the tests and the demo run.

Every binary is looked up in this order:

1. ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER=/opt/k8s/kube-apiserver``),
2. ``KUBEBUILDER_ASSETS`` (a directory, as filled by controller-runtime's ``setup-envtest``;
   only for kube-apiserver, etcd and kubectl),
3. the cache (``$CERTDEPOT_CACHE/bin``), filled by :func:`provision`, which builds each
   binary from its Go module (the pins: ``pins.py``) with the machine's ``go`` at the
   pinned version (``gobuild.py``).

Each cached binary has a ``<name>.stamp`` file naming exactly what it was built from; a
changed pin no longer matches the stamp and is rebuilt, an unchanged one is reused, so
provisioning is idempotent and a second run takes well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from certdepot.testenv import gobuild
from certdepot.testenv.gobuild import Log, ProvisionError
from certdepot.testenv.pins import (
    ALL_BINARIES,
    BINARIES,
    BUILDS,
    COREDNS_VERSION,
    ENVTEST_BINARIES,
    ETCD_VERSION,
    FILES,
    HELM_VERSION,
    KUBERNETES_VERSION,
    NODE_BINARIES,
    NODE_BUILDS,
    PEBBLE_VERSION,
    PROMETHEUS_OPERATOR_VERSION,
    PROMETHEUS_VERSION,
    TRAEFIK_VERSION,
    GoBuild,
    ModuleFile,
)

# The pins (pins.py) and the error type (gobuild.py) are imported from here by the
# test environment, the demo and the tests: one place to import provisioning from.
__all__ = [
    "ALL_BINARIES",
    "BINARIES",
    "BUILDS",
    "COREDNS_VERSION",
    "ENVTEST_BINARIES",
    "ETCD_VERSION",
    "FILES",
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "NODE_BINARIES",
    "NODE_BUILDS",
    "PEBBLE_VERSION",
    "PROMETHEUS_OPERATOR_VERSION",
    "PROMETHEUS_VERSION",
    "TRAEFIK_VERSION",
    "GoBuild",
    "Log",
    "MissingBinaryError",
    "ModuleFile",
    "ProvisionError",
    "binary",
    "cache_dir",
    "data_file",
    "provision",
    "provision_files",
    "resolve",
]

CACHE_ENV = "CERTDEPOT_CACHE"


class MissingBinaryError(ProvisionError):
    """A binary is neither overridden by an environment variable nor provisioned."""


def env_var(name: str) -> str:
    """The override variable of a binary: ``kube-apiserver`` -> ``TEST_ASSET_KUBE_APISERVER``."""
    return "TEST_ASSET_" + name.upper().replace("-", "_")


def _source_checkout() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "operator" / "certdepot").is_dir():
        return root
    return None


def cache_dir() -> Path:
    """``$CERTDEPOT_CACHE``; else ``<checkout>/.cache/testenv`` (as the Makefile sets it)
    when running from a source checkout; else ``~/.cache/certdepot/testenv``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    checkout = _source_checkout()
    if checkout is not None:
        return checkout / ".cache" / "testenv"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "certdepot" / "testenv"


@dataclass(frozen=True)
class Resolution:
    name: str
    path: Path | None
    source: str  # e.g. "TEST_ASSET_ETCD", "KUBEBUILDER_ASSETS", "cache", "missing", "stale"


def resolve(name: str) -> Resolution:
    """Where ``name`` comes from, without building anything."""
    if name not in ALL_BINARIES:
        raise ValueError(f"unknown binary {name!r}; known: {', '.join(ALL_BINARIES)}")
    var = env_var(name)
    if os.environ.get(var):
        return Resolution(name, Path(os.environ[var]).expanduser(), var)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and name in ENVTEST_BINARIES:
        return Resolution(name, Path(assets).expanduser() / name, "KUBEBUILDER_ASSETS")
    path = cache_dir() / "bin" / name
    stamp = path.with_name(name + ".stamp")
    if not path.is_file():
        return Resolution(name, None, "missing")
    if not stamp.is_file() or stamp.read_text() != ALL_BINARIES[name].stamp(name):
        return Resolution(name, path, "stale")
    return Resolution(name, path, "cache")


def _how_to_get(name: str) -> str:
    command = "make provision-node` (or `certdepot dev provision --node" if (
        name in NODE_BINARIES) else "make provision` (or `certdepot dev provision"
    lines = [
        f"Run `{command}`) to build it with Go,",
        f"or point {env_var(name)} at an executable",
    ]
    if name in ENVTEST_BINARIES:
        lines[-1] += (
            ", or KUBEBUILDER_ASSETS at a directory holding kube-apiserver, etcd and kubectl"
            " (e.g. `setup-envtest use -p path`)"
        )
    return " ".join(lines) + ". See docs/testing.md."


def binary(name: str) -> Path:
    """The path of a provisioned (or overridden) executable; never builds.

    Go-module builds only: :func:`certdepot.testenv.binaries.binary` also knows the
    cert-manager controller (certmanager_assets).
    """
    res = resolve(name)
    if res.source in ("missing", "stale") or res.path is None:
        state = "not provisioned" if res.source == "missing" else "provisioned for an old pin"
        raise MissingBinaryError(f"{name} is {state} in {cache_dir()}. {_how_to_get(name)}")
    if not (res.path.is_file() and os.access(res.path, os.X_OK)):
        raise MissingBinaryError(
            f"{name}: {res.source} points to {res.path}, which is not an executable file. "
            f"{_how_to_get(name)}"
        )
    return res.path


def data_file(name: str) -> Path:
    """The path of a provisioned :data:`FILES` entry; never fetches."""
    wanted = FILES[name]
    path = cache_dir() / "files" / name
    stamp = path.with_name(name + ".stamp")
    if not path.is_file() or not stamp.is_file() or stamp.read_text() != wanted.stamp():
        raise MissingBinaryError(
            f"{name} ({wanted.module}@{wanted.version}) is not provisioned in {cache_dir()}. "
            "Run `make provision` (or `certdepot dev provision`), which fetches it with "
            "`go mod download`. See docs/testing.md."
        )
    return path


def provision_files(*, force: bool = False, log: Log = print) -> dict[str, Path]:
    """Fetch every :data:`FILES` entry that is missing or stale. Idempotent, locked."""
    root = cache_dir()
    with _locked(root):
        todo = []
        for name in FILES:
            try:
                data_file(name)
                if force:
                    todo.append(name)
            except MissingBinaryError:
                todo.append(name)
        if todo:
            go = gobuild.require_go(todo)
            run = gobuild.Runner(go=go, log=log, log_file=root / "provision.log")
            for name in todo:
                log(f"fetching {name} from {FILES[name].module}@{FILES[name].version}")
                gobuild.fetch(FILES[name], run, root)
        return {name: data_file(name) for name in FILES}


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def provision(
    names: Iterable[str] | None = None,
    *,
    force: bool = False,
    log: Log = print,
) -> dict[str, Resolution]:
    """Build whatever is missing or stale; skip what env vars override. Idempotent.

    Returns where each binary now comes from. Safe to run concurrently (file lock).
    """
    wanted = list(names) if names is not None else list(BINARIES)
    for name in wanted:
        if name not in ALL_BINARIES:
            raise ValueError(f"unknown binary {name!r}; known: {', '.join(ALL_BINARIES)}")
    root = cache_dir()
    with _locked(root):
        todo: dict[str, list[str]] = {}
        for name in wanted:
            res = resolve(name)
            if res.source not in ("cache", "missing", "stale"):
                log(f"{name}: from {res.source} ({res.path})")
                continue
            if res.source == "cache" and not force:
                continue
            todo.setdefault(ALL_BINARIES[name].key, []).append(name)
        if todo:
            go = gobuild.require_go(n for ns in todo.values() for n in ns)
            run = gobuild.Runner(go=go, log=log, log_file=root / "provision.log")
            for build in (*BUILDS, *NODE_BUILDS):
                if build.key not in todo:
                    continue
                started = time.monotonic()
                log(f"building {', '.join(todo[build.key])} from {build.module}@{build.version}")
                gobuild.build(build, todo[build.key], run, root)
                log(f"  done in {time.monotonic() - started:.0f}s")
        return {name: resolve(name) for name in wanted}
