"""Provision the pinned binaries that the tests and the demo run.

Every binary is looked up in this order:

1. ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER=/opt/k8s/kube-apiserver``),
2. ``KUBEBUILDER_ASSETS`` (a directory, as filled by controller-runtime's ``setup-envtest``;
   only for kube-apiserver, etcd and kubectl),
3. the cache (``$CERTDEPOT_CACHE/bin``), filled by :func:`provision`, which builds each
   binary from its Go module with the machine's ``go`` at the pinned version.

Each cached binary has a ``<name>.stamp`` file naming exactly what it was built from; a
changed pin no longer matches the stamp and is rebuilt, an unchanged one is reused, so
provisioning is idempotent and a second run takes well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ALL_BINARIES",
    "BINARIES",
    "BUILDS",
    "NODE_BINARIES",
    "NODE_BUILDS",
    "GoBuild",
    "MissingBinaryError",
    "ProvisionError",
    "binary",
    "cache_dir",
    "provision",
    "resolve",
]

CACHE_ENV = "CERTDEPOT_CACHE"
MIN_GO = (1, 26)


class ProvisionError(RuntimeError):
    """Provisioning cannot proceed; the message says what to install or set."""


class MissingBinaryError(ProvisionError):
    """A binary is neither overridden by an environment variable nor provisioned."""


@dataclass(frozen=True)
class GoBuild:
    """One Go module at a pinned version and the binaries built from its packages."""

    key: str
    module: str
    version: str
    # binary name -> Go package path
    packages: dict[str, str]
    ldflags: tuple[str, ...] = ()
    # k8s.io/kubernetes requires its staging modules at v0.0.0 (they are `replace`d by
    # local paths in its own repository); a consumer must replace them with real versions.
    replace_staging: bool = False
    # Go build tags, e.g. Prometheus's remove_all_sd (no cloud service discovery to compile).
    tags: tuple[str, ...] = ()
    # Build inside a copy of the module's own source (its go.mod, go.sum and replace
    # directives) instead of from a throwaway consumer module: some modules (Traefik) only
    # resolve with their own replace directives.
    in_module_source: bool = False

    def stamp(self, name: str) -> str:
        """What a binary was built from; any change of pin or flags forces a rebuild."""
        flags = " ".join(self.ldflags)
        # Tags only when set, so the stamps of builds without tags stay as they were.
        tags = f" tags={','.join(self.tags)}" if self.tags else ""
        return f"{self.module}@{self.version} {self.packages[name]} ldflags={flags}{tags}\n"


def _kube_version_ldflags(version: str) -> tuple[str, ...]:
    # Without these the binaries report v0.0.0-master; helm and kubectl compare the
    # server's version against charts and their own, so give them the real one.
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
PEBBLE_VERSION = "v2.10.3"
HELM_VERSION = "v4.3.2"
# Prometheus 3.x is published to Go as v0.3MM.P (3.16.0 -> v0.316.0).
PROMETHEUS_VERSION = "v0.316.0"

BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        key="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kube_version_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
    ),
    GoBuild(
        key="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        packages={"etcd": "go.etcd.io/etcd/server/v3"},
    ),
    GoBuild(
        key="pebble",
        module="github.com/letsencrypt/pebble/v2",
        version=PEBBLE_VERSION,
        packages={
            "pebble": "github.com/letsencrypt/pebble/v2/cmd/pebble",
            "pebble-challtestsrv": "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv",
        },
        ldflags=(f"-X main.version={PEBBLE_VERSION}",),
    ),
    GoBuild(
        key="helm",
        module="helm.sh/helm/v4",
        version=HELM_VERSION,
        packages={"helm": "helm.sh/helm/v4/cmd/helm"},
        ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",),
    ),
    # The chart's alert rules: `promtool check rules`, and a real Prometheus evaluating them
    # against the operator and repository (tests/integration/test_chart_monitoring.py).
    # remove_all_sd leaves out the cloud service discoveries (static targets are all the
    # tests use), most of the build; without the builtinassets tag the web UI is not
    # embedded, the HTTP API is served all the same.
    GoBuild(
        key="prometheus",
        module="github.com/prometheus/prometheus",
        version=PROMETHEUS_VERSION,
        packages={
            "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
            "promtool": "github.com/prometheus/prometheus/cmd/promtool",
        },
        ldflags=(f"-X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION}",),
        tags=("remove_all_sd",),
    ),
)

# --- the one-node cluster (testenv/node.py): opt-in, `certdepot dev provision --node` ---
COREDNS_VERSION = "v1.14.7"
# v3.7 does not build from the module proxy (some of its modules are refused); v3.6 does.
TRAEFIK_VERSION = "v3.6.12"
NODE_BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        # Same module and flags as kube-apiserver; a separate key so that `make provision`
        # (which does not build the node) never rebuilds these, nor these kube-apiserver.
        key="kubernetes-node",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        ldflags=_kube_version_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
    ),
    GoBuild(
        key="coredns",
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        packages={"coredns": "github.com/coredns/coredns"},
    ),
    GoBuild(
        key="traefik",
        module="github.com/traefik/traefik/v3",
        version=TRAEFIK_VERSION,
        packages={"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
        ldflags=(f"-X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",),
        in_module_source=True,
    ),
)

# What `make provision` builds (the node binaries are not in it).
BINARIES: dict[str, GoBuild] = {name: b for b in BUILDS for name in b.packages}
NODE_BINARIES: dict[str, GoBuild] = {name: b for b in NODE_BUILDS for name in b.packages}
# Every binary the provisioner knows: what resolve(), binary() and provision() accept.
ALL_BINARIES: dict[str, GoBuild] = {**BINARIES, **NODE_BINARIES}


@dataclass(frozen=True)
class ModuleFile:
    """A file that ships inside a Go module, fetched with ``go mod download`` (the module
    proxy is the one source this machine's tests may use), e.g. a third-party CRD."""

    name: str
    module: str
    version: str
    path: str

    def stamp(self) -> str:
        return f"{self.module}@{self.version}/{self.path}\n"


PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
FILES: dict[str, ModuleFile] = {
    f.name: f
    for f in (
        # The chart's ServiceMonitors are checked against the real schema on a real API server.
        ModuleFile(
            name="servicemonitors-crd.yaml",
            module="github.com/prometheus-operator/prometheus-operator",
            version=PROMETHEUS_OPERATOR_VERSION,
            path="example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        ),
    )
}
ENVTEST_BINARIES = ("kube-apiserver", "etcd", "kubectl")


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


# --- building ---------------------------------------------------------------------------

GO_MISSING = """\
Go >= {want} is needed to build the test binaries ({names}) and was not found ({why}).
Either install Go (the official tarball into /usr/local/go, or your distribution's golang
package) and run `make provision` again, or supply the binaries yourself:
  KUBEBUILDER_ASSETS=<dir>            kube-apiserver, etcd, kubectl (controller-runtime's
                                      `setup-envtest use -p path <version>` prints such a dir)
  TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBECTL   single binaries instead
  TEST_ASSET_PEBBLE, TEST_ASSET_PEBBLE_CHALLTESTSRV                Pebble >= 2.7
  TEST_ASSET_HELM                                                  helm 3 or 4
  TEST_ASSET_PROMETHEUS, TEST_ASSET_PROMTOOL                       Prometheus 3
  TEST_ASSET_KUBELET, TEST_ASSET_KUBE_PROXY, TEST_ASSET_KUBE_SCHEDULER,
  TEST_ASSET_KUBE_CONTROLLER_MANAGER, TEST_ASSET_COREDNS, TEST_ASSET_TRAEFIK  (node cluster)
See docs/testing.md."""


def find_go() -> Path | None:
    found = shutil.which("go")
    if found:
        return Path(found)
    for candidate in (Path("/usr/local/go/bin/go"), Path.home() / "go" / "bin" / "go"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _go_version(go: Path) -> tuple[int, int]:
    out = subprocess.run(
        [str(go), "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if not match:
        raise ProvisionError(f"cannot parse the Go version {out!r} reported by {go}")
    return int(match.group(1)), int(match.group(2))


def _require_go(names: Iterable[str]) -> Path:
    want = ".".join(map(str, MIN_GO))
    go = find_go()
    names_text = ", ".join(names)
    if go is None:
        raise ProvisionError(GO_MISSING.format(want=want, names=names_text, why="no `go` on PATH"))
    have = _go_version(go)
    if have < MIN_GO:
        why = f"{go} is go{have[0]}.{have[1]}"
        raise ProvisionError(GO_MISSING.format(want=want, names=names_text, why=why))
    return go


Log = Callable[[str], None]


@dataclass
class _Runner:
    go: Path
    log: Log
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, args: list[str], cwd: Path) -> str:
        shown = " ".join(args)
        if len(shown) > 240:  # the staging -replace list is long; the log file has it all
            shown = shown[:200] + f" ... ({len(args)} arguments)"
        self.log(f"  $ go {shown}")
        with self.log_file.open("a") as fh:
            fh.write(f"\n$ (cd {cwd} && go {' '.join(args)})\n")
            fh.flush()
            proc = subprocess.run(
                [str(self.go), *args],
                cwd=cwd,
                env={**os.environ, **self.env},
                stdout=subprocess.PIPE,
                stderr=fh,
                text=True,
            )
        if proc.returncode != 0:
            from certdepot.testenv.procs import tail

            raise ProvisionError(
                f"`go {' '.join(args)}` failed (exit {proc.returncode}) in {cwd}; "
                f"full log: {self.log_file}\n{tail(self.log_file, 30)}"
            )
        return proc.stdout


def staging_replacements(run: _Runner, build: GoBuild, cwd: Path) -> list[str]:
    """``replace`` directives for the staging modules k8s.io/kubernetes requires at v0.0.0.

    Derived from the published go.mod so a new Kubernetes pin needs no list update."""
    info = json.loads(run(["mod", "download", "-json", f"{build.module}@{build.version}"], cwd))
    gomod = json.loads(run(["mod", "edit", "-json", info["GoMod"]], cwd))
    # v1.37.2 -> v0.37.2: the staging modules are tagged with the same minor and patch.
    staging_version = "v0." + build.version.lstrip("v").split(".", 1)[1]
    return [
        f"{req['Path']}={req['Path']}@{staging_version}"
        for req in gomod.get("Require", [])
        if req["Version"] == "v0.0.0" and req["Path"].startswith("k8s.io/")
    ]


def _prepare_consumer(build: GoBuild, names: list[str], run: _Runner, workdir: Path) -> None:
    # A throwaway main module: it lets `replace` apply (a plain `go install m@v` refuses
    # modules whose go.mod has replace directives, as etcd's has) and pins exact versions.
    (workdir / "go.mod").write_text(f"module certdepot.invalid/build/{build.key}\n")
    if build.replace_staging:
        edits = [f"-replace={r}" for r in staging_replacements(run, build, workdir)]
        run(["mod", "edit", *edits], workdir)
    wanted = [build.packages[n] for n in names]
    run(["get", *(f"{pkg}@{build.version}" for pkg in wanted)], workdir)


def _prepare_source(build: GoBuild, run: _Runner, workdir: Path) -> Path:
    """A writable copy of the module's source (the module cache is read-only)."""
    info = json.loads(run(["mod", "download", "-json", f"{build.module}@{build.version}"], workdir))
    source = workdir / "src"
    shutil.copytree(info["Dir"], source)
    for dirpath, _dirs, _files in os.walk(source):
        os.chmod(dirpath, 0o700)
    return source


def _build(build: GoBuild, names: list[str], run: _Runner, root: Path) -> None:
    workdir = root / "build" / f"{build.key}-{build.version}"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    packages = {n: build.packages[n] for n in names}
    if build.in_module_source:
        workdir = _prepare_source(build, run, workdir)
        packages = {n: "." + p.removeprefix(build.module) for n, p in packages.items()}
    else:
        _prepare_consumer(build, names, run, workdir)
    ldflags = " ".join(("-s", "-w", *build.ldflags))
    outdir = Path(tempfile.mkdtemp(prefix=f"{build.key}-", dir=root))
    try:
        for name in names:
            tags = [f"-tags={','.join(build.tags)}"] if build.tags else []
            run(
                ["build", "-mod=mod", "-trimpath", f"-ldflags={ldflags}", *tags,
                 "-o", str(outdir / name), packages[name]],
                workdir,
            )
        bindir = root / "bin"
        bindir.mkdir(exist_ok=True)
        for name in names:
            # Rename is atomic: a concurrent reader sees the old binary or the new one.
            os.replace(outdir / name, bindir / name)
            (bindir / f"{name}.stamp").write_text(build.stamp(name))
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    shutil.rmtree(root / "build" / f"{build.key}-{build.version}", ignore_errors=True)


def _fetch(wanted: ModuleFile, run: _Runner, root: Path) -> None:
    info = json.loads(run(["mod", "download", "-json", f"{wanted.module}@{wanted.version}"], root))
    source = Path(info["Dir"]) / wanted.path
    if not source.is_file():
        raise ProvisionError(f"{wanted.module}@{wanted.version} has no {wanted.path}")
    outdir = root / "files"
    outdir.mkdir(exist_ok=True)
    tmp = outdir / f".{wanted.name}.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, outdir / wanted.name)
    (outdir / f"{wanted.name}.stamp").write_text(wanted.stamp())


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
            run = _Runner(go=_require_go(todo), log=log, log_file=root / "provision.log")
            for name in todo:
                log(f"fetching {name} from {FILES[name].module}@{FILES[name].version}")
                _fetch(FILES[name], run, root)
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
            go = _require_go(n for ns in todo.values() for n in ns)
            run = _Runner(go=go, log=log, log_file=root / "provision.log")
            for build in (*BUILDS, *NODE_BUILDS):
                if build.key not in todo:
                    continue
                started = time.monotonic()
                log(f"building {', '.join(todo[build.key])} from {build.module}@{build.version}")
                _build(build, todo[build.key], run, root)
                log(f"  done in {time.monotonic() - started:.0f}s")
        return {name: resolve(name) for name in wanted}
