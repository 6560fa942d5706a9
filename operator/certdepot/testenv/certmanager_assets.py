"""cert-manager's controller and CRDs at a pinned release, for tests and benchmarks.

cert-manager's controller is a nested Go module whose go.mod ``replace``s its parent with
a relative path, so neither ``go install`` nor the throwaway-module build of
:mod:`certdepot.testenv.provision` can build it from the Go module proxy. Its binary and
CRDs therefore come, in this order, from:

1. ``TEST_ASSET_CERT_MANAGER_CONTROLLER`` (an executable) and
   ``TEST_ASSET_CERT_MANAGER_CRDS`` (a directory of CRD YAML files), used as they are;
2. the cache, ``$CERTDEPOT_CACHE/bin/cert-manager-controller`` and
   ``$CERTDEPOT_CACHE/files/cert-manager-<version>/``, each with a stamp, filled by
   :func:`provision_cert_manager` from
   a. a prebuilt asset folder ``shared/assets/cert-manager-<version>/`` beside the
      checkout (or beside one of its parents), as CI lays it: ``controller.xz`` checked
      against ``SHA256SUMS`` and against the checksum pinned here, plus the CRDs; or
   b. the upstream source at the same tag (``git clone`` + ``go build`` of
      ``cmd/controller``, CRDs from ``deploy/crds``), on a machine that reaches it.

Use :func:`controller_binary` and :func:`crd_files`; they never build.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from certdepot.testenv import gobuild, procs
from certdepot.testenv import provision as prov

__all__ = [
    "CERT_MANAGER_VERSION",
    "CONTROLLER",
    "controller_binary",
    "crd_files",
    "crds_dir",
    "provision_cert_manager",
    "resolve_controller",
]

CERT_MANAGER_VERSION = "v1.21.1"
CONTROLLER = "cert-manager-controller"
UPSTREAM_GIT = "https://github.com/cert-manager/cert-manager.git"
# sha256 of the uncompressed prebuilt controller in the asset folder (its SHA256SUMS).
PREBUILT_SHA256 = "7b262896daf40958b6fd7241faab52204afb3d46af1ffcc4b734317923642450"
# The CRDs the controller needs, as named in deploy/crds at the tag.
CRD_FILES = (
    "acme.cert-manager.io_challenges.yaml",
    "acme.cert-manager.io_orders.yaml",
    "cert-manager.io_certificaterequests.yaml",
    "cert-manager.io_certificates.yaml",
    "cert-manager.io_clusterissuers.yaml",
    "cert-manager.io_issuers.yaml",
)
CRDS_ENV = "TEST_ASSET_CERT_MANAGER_CRDS"
_VERSION_PKG = "github.com/cert-manager/cert-manager/pkg/util"


def _stamp() -> str:
    """What the cache must hold; the origin (asset folder or source) is a second line."""
    return f"cert-manager {CERT_MANAGER_VERSION} cmd/controller\n"


def _crd_stamp() -> str:
    return f"cert-manager {CERT_MANAGER_VERSION} deploy/crds {' '.join(CRD_FILES)}\n"


def _first_line_matches(stamp: Path, wanted: str) -> bool:
    return stamp.is_file() and stamp.read_text().splitlines(keepends=True)[:1] == [wanted]


def _cached_controller() -> Path:
    return prov.cache_dir() / "bin" / CONTROLLER


def _cached_crds() -> Path:
    return prov.cache_dir() / "files" / f"cert-manager-{CERT_MANAGER_VERSION}"


def resolve_controller() -> prov.Resolution:
    """Where the controller comes from, without provisioning anything."""
    var = prov.env_var(CONTROLLER)
    if os.environ.get(var):
        return prov.Resolution(CONTROLLER, Path(os.environ[var]).expanduser(), var)
    path = _cached_controller()
    if not path.is_file():
        return prov.Resolution(CONTROLLER, None, "missing")
    if not _first_line_matches(path.with_name(CONTROLLER + ".stamp"), _stamp()):
        return prov.Resolution(CONTROLLER, path, "stale")
    return prov.Resolution(CONTROLLER, path, "cache")


def _how_to_get() -> str:
    return (
        f"Run `make provision` (or `certdepot dev provision`): it takes cert-manager "
        f"{CERT_MANAGER_VERSION} from shared/assets/cert-manager-{CERT_MANAGER_VERSION}/ "
        "beside the checkout, else builds it from the upstream source (git and Go); or point "
        f"{prov.env_var(CONTROLLER)} at a controller binary and {CRDS_ENV} at its CRDs. "
        "See docs/testing.md."
    )


def controller_binary() -> Path:
    """The cert-manager controller executable; never provisions."""
    res = resolve_controller()
    if res.path is None or res.source in ("missing", "stale"):
        state = "not provisioned" if res.source == "missing" else "provisioned for an old pin"
        raise prov.MissingBinaryError(
            f"{CONTROLLER} {CERT_MANAGER_VERSION} is {state} in {prov.cache_dir()}. "
            f"{_how_to_get()}")
    if not (res.path.is_file() and os.access(res.path, os.X_OK)):
        raise prov.MissingBinaryError(
            f"{CONTROLLER}: {res.source} points to {res.path}, which is not an executable "
            f"file. {_how_to_get()}")
    return res.path


def crds_dir() -> Path:
    """The directory holding cert-manager's CRDs (:data:`CRD_FILES`); never provisions."""
    configured = os.environ.get(CRDS_ENV)
    directory = Path(configured).expanduser() if configured else _cached_crds()
    stamp = directory.with_name(directory.name + ".stamp")
    missing = [n for n in CRD_FILES if not (directory / n).is_file()]
    if missing or (not configured and not _first_line_matches(stamp, _crd_stamp())):
        where = CRDS_ENV if configured else "the cache"
        raise prov.MissingBinaryError(
            f"cert-manager {CERT_MANAGER_VERSION} CRDs are not provisioned in {directory} "
            f"({where}; missing: {', '.join(missing) or 'a current stamp'}). {_how_to_get()}")
    return directory


def crd_files() -> list[Path]:
    """Each CRD file, in :data:`CRD_FILES` order (for ``kubectl apply -f``)."""
    directory = crds_dir()
    return [directory / n for n in CRD_FILES]


# --- provisioning -------------------------------------------------------------------------

def asset_dir() -> Path | None:
    """``shared/assets/cert-manager-<version>`` beside the checkout or one of its parents
    (CI clones main into a fresh folder with shared/ beside it; a git worktree sits deeper)."""
    checkout = prov._source_checkout()
    if checkout is None:
        return None
    name = f"cert-manager-{CERT_MANAGER_VERSION}"
    for parent in list(checkout.parents)[:3]:
        candidate = parent / "shared" / "assets" / name
        if (candidate / "controller.xz").is_file():
            return candidate
    return None


def _listed_sha256(sums: Path, name: str) -> str:
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    raise prov.ProvisionError(f"{sums} lists no checksum for {name}")


def _install_controller(source: Path, origin: str, want_sha256: str | None) -> None:
    """Copy (or decompress, for ``.xz``) ``source`` into the cache, checking its sha256."""
    bindir = prov.cache_dir() / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{CONTROLLER}-", dir=bindir)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open_maybe_xz(source) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if want_sha256 is not None and digest.hexdigest() != want_sha256:
            raise prov.ProvisionError(
                f"{source}: sha256 {digest.hexdigest()} is not the pinned {want_sha256}")
        tmp.chmod(0o755)
        os.replace(tmp, bindir / CONTROLLER)  # atomic: readers see old or new
    finally:
        tmp.unlink(missing_ok=True)
    (bindir / f"{CONTROLLER}.stamp").write_text(
        f"{_stamp()}from {origin} sha256={digest.hexdigest()}\n")


def _open_maybe_xz(path: Path) -> IO[bytes]:
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    return path.open("rb")


def _install_crds(source_dir: Path, origin: str) -> None:
    target = _cached_crds()
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in CRD_FILES:
        if not (source_dir / name).is_file():
            raise prov.ProvisionError(f"{source_dir} has no {name}")
        shutil.copyfile(source_dir / name, tmp / name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    target.with_name(target.name + ".stamp").write_text(f"{_crd_stamp()}from {origin}\n")


def _from_assets(assets: Path, log: prov.Log) -> None:
    listed = _listed_sha256(assets / "SHA256SUMS", "controller")
    if listed != PREBUILT_SHA256:
        raise prov.ProvisionError(
            f"{assets}/SHA256SUMS lists {listed} for the controller; the pinned build is "
            f"{PREBUILT_SHA256} (certdepot.testenv.certmanager_assets.PREBUILT_SHA256)")
    log(f"{CONTROLLER}: decompressing {assets / 'controller.xz'} (sha256 checked)")
    _install_controller(assets / "controller.xz", str(assets), PREBUILT_SHA256)
    _install_crds(assets, str(assets))


def _from_source(log: prov.Log) -> None:
    """Build cmd/controller from the upstream tag: needs git, Go and access to both."""
    go = gobuild.require_go([CONTROLLER])
    git = shutil.which("git")
    if git is None:
        raise prov.ProvisionError(f"building {CONTROLLER} from source needs git. {_how_to_get()}")
    root = prov.cache_dir()
    work = Path(tempfile.mkdtemp(prefix="cert-manager-src-", dir=root))
    log_file = root / "provision.log"
    try:
        src = work / "cert-manager"
        _logged([git, "clone", "--quiet", "--depth=1", f"--branch={CERT_MANAGER_VERSION}",
                 UPSTREAM_GIT, str(src)], work, log_file, log)
        commit = _logged([git, "rev-parse", "HEAD"], src, log_file, log).strip()
        ldflags = " ".join(["-s", "-w", f"-X {_VERSION_PKG}.AppVersion={CERT_MANAGER_VERSION}",
                            f"-X {_VERSION_PKG}.AppGitCommit={commit}"])
        out = work / CONTROLLER
        # cmd/controller is its own module; its go.mod replaces the parent with ../../.
        _logged([str(go), "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(out), "."],
                src / "cmd" / "controller", log_file, log)
        origin = f"{UPSTREAM_GIT}@{CERT_MANAGER_VERSION} ({commit})"
        _install_controller(out, origin, None)
        _install_crds(src / "deploy" / "crds", origin)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _logged(argv: list[str], cwd: Path, log_file: Path, log: prov.Log) -> str:
    log(f"  $ {' '.join(argv)}")
    with log_file.open("a") as fh:
        fh.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n")
        fh.flush()
        proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=fh, text=True)
    if proc.returncode != 0:
        raise prov.ProvisionError(
            f"`{' '.join(argv)}` failed (exit {proc.returncode}); full log: {log_file}\n"
            f"{procs.tail(log_file, 30)}\n{_how_to_get()}")
    return proc.stdout


def provision_cert_manager(*, force: bool = False, log: prov.Log = print) -> prov.Resolution:
    """Fill the cache with the pinned controller and CRDs unless they are current or
    overridden. Idempotent, and locked against concurrent provisioning."""
    with prov._locked(prov.cache_dir()):
        res = resolve_controller()
        overridden = res.source not in ("cache", "missing", "stale")
        crds_current = _crds_current()
        if overridden and os.environ.get(CRDS_ENV):
            log(f"{CONTROLLER}: from {res.source} ({res.path}); CRDs from {CRDS_ENV}")
            return res
        if res.source == "cache" and crds_current and not force:
            return res
        assets = asset_dir()
        if assets is not None:
            _from_assets(assets, log)
        else:
            log(f"{CONTROLLER}: no shared/assets/cert-manager-{CERT_MANAGER_VERSION} beside "
                "the checkout; building it from the upstream source")
            _from_source(log)
        return resolve_controller()


def _crds_current() -> bool:
    try:
        crds_dir()
    except prov.MissingBinaryError:
        return False
    return True
