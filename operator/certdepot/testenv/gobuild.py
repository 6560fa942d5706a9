"""Building and fetching with the machine's Go: the toolchain check, the logged ``go``
runner, a build in a throwaway main module (or in the module's own source), and a file
fetched with ``go mod download``. ``provision`` decides what to build and holds the lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from certdepot.testenv.pins import GoBuild, ModuleFile

MIN_GO = (1, 26)


class ProvisionError(RuntimeError):
    """Provisioning cannot proceed; the message says what to install or set."""


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


def require_go(names: Iterable[str]) -> Path:
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
class Runner:
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


def staging_replacements(run: Runner, build: GoBuild, cwd: Path) -> list[str]:
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


def _prepare_consumer(build: GoBuild, names: list[str], run: Runner, workdir: Path) -> None:
    # A throwaway main module: it lets `replace` apply (a plain `go install m@v` refuses
    # modules whose go.mod has replace directives, as etcd's has) and pins exact versions.
    (workdir / "go.mod").write_text(f"module certdepot.invalid/build/{build.key}\n")
    if build.replace_staging:
        edits = [f"-replace={r}" for r in staging_replacements(run, build, workdir)]
        run(["mod", "edit", *edits], workdir)
    wanted = [build.packages[n] for n in names]
    run(["get", *(f"{pkg}@{build.version}" for pkg in wanted)], workdir)


def _prepare_source(build: GoBuild, run: Runner, workdir: Path) -> Path:
    """A writable copy of the module's source (the module cache is read-only)."""
    info = json.loads(run(["mod", "download", "-json", f"{build.module}@{build.version}"], workdir))
    source = workdir / "src"
    shutil.copytree(info["Dir"], source)
    for dirpath, _dirs, _files in os.walk(source):
        os.chmod(dirpath, 0o700)
    return source


def build(build: GoBuild, names: list[str], run: Runner, root: Path) -> None:
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


def fetch(wanted: ModuleFile, run: Runner, root: Path) -> None:
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
