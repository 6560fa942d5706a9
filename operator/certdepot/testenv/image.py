"""Build the project image on a machine with no image registry: ``make image``.

The base is made from Debian packages with mmdebstrap (python3, venv, CA certificates; the
same Python 3.11 as the Dockerfile's default ``python:3.11-slim-bookworm``) and imported
into a private dockerd that lives in a temporary directory: its socket, data and exec roots
are there, it adds no bridge and no iptables rule (builds use the host's network), and it
is stopped by PID when the build is done. The Dockerfile is the one users build; the base
is passed as ``--build-arg PYTHON_IMAGE``. The image is saved as a tarball that a container
runtime imports (:class:`certdepot.testenv.node.NodeCluster` loads it into containerd).

Package registries may be reached through a TLS-intercepting proxy whose CA is in the
host's local trust store (/usr/local/share/ca-certificates); those CAs are given to the
build stage only (``--build-arg EXTRA_CA_CERTS``), so pip can verify the index, and never
reach the runtime image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from certdepot.testenv import procs
from certdepot.testenv.hostclean import unmount_under
from certdepot.testenv.provision import ProvisionError, cache_dir

__all__ = ["BASE_PACKAGES", "DockerDaemon", "base_tarball", "build_image"]

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_TAG = f"certdepot-base:{BASE_SUITE}"
DEFAULT_TAG = "certdepot:dev"
# Debian's apt sources on the host: mmdebstrap reads them from stdin ("-"), so no mirror
# is ever named here.
HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
ROOT = Path(__file__).resolve().parents[3]

Log = Callable[[str], None]


def _need(tool: str, package: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        raise ProvisionError(
            f"{tool} is needed to build the image: `apt-get install {package}` "
            "(or `certdepot dev provision --node`, which installs it as root)"
        )
    return found


def _run(args: Sequence[str], log_path: Path, *, stdin: Path | None = None,
         env: dict[str, str] | None = None) -> None:
    with log_path.open("a") as log, open(stdin or "/dev/null", "rb") as inp:
        log.write(f"\n$ {' '.join(args)[:500]}\n")
        log.flush()
        proc = subprocess.run(list(args), stdin=inp, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise ProvisionError(
            f"`{args[0]} {args[1] if len(args) > 1 else ''}` failed (exit {proc.returncode}); "
            f"log: {log_path}\n{procs.tail(log_path, 30)}"
        )


def base_tarball(*, force: bool = False, log: Log = print) -> Path:
    """The Debian root filesystem tarball, stamped with its suite and packages; cached."""
    outdir = cache_dir() / "image"
    outdir.mkdir(parents=True, exist_ok=True)
    tarball = outdir / f"base-{BASE_SUITE}.tar"
    stamp = tarball.with_name(tarball.name + ".stamp")
    wanted = f"mmdebstrap --variant=minbase {BASE_SUITE} {','.join(BASE_PACKAGES)}\n"
    if not force and tarball.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return tarball
    mmdebstrap = _need("mmdebstrap", "mmdebstrap")
    sources = next((p for p in HOST_SOURCES if p.is_file()), None)
    if sources is None:
        raise ProvisionError("no Debian apt sources on this host for mmdebstrap to use")
    log(f"making the base root filesystem with mmdebstrap ({BASE_SUITE}; about 2 min)")
    started = time.monotonic()
    tmp = tarball.with_name(tarball.name + ".tmp")
    _run(
        [mmdebstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         "--format=tar", BASE_SUITE, str(tmp), "-"],
        outdir / "build.log",
        stdin=sources,
    )
    tmp.replace(tarball)
    stamp.write_text(wanted)
    log(f"  done in {time.monotonic() - started:.0f}s")
    return tarball


def extra_ca_certs() -> str:
    """The host's locally added CAs (PEM), e.g. a TLS-intercepting proxy's; '' if none."""
    if not LOCAL_CA_DIR.is_dir():
        return ""
    pems = [p.read_text().strip() for p in sorted(LOCAL_CA_DIR.rglob("*.crt"))]
    return "\n".join(p for p in pems if "BEGIN CERTIFICATE" in p)


class DockerDaemon(procs.Service):
    """A private dockerd (and the containerd it manages) under a temporary directory."""

    PROCESSES = ("dockerd",)

    def __init__(self, workdir: Path | None = None) -> None:
        # Short paths: unix socket names are limited to 108 bytes.
        super().__init__(workdir, "certdepot-docker-")
        self.dockerd: procs.ManagedProcess | None = None
        self.socket = self.workdir / "docker.sock"

    def start(self) -> DockerDaemon:
        dockerd = _need("dockerd", "docker.io")
        self.dockerd = procs.start(
            "dockerd",
            [
                dockerd,
                f"--data-root={self.workdir / 'data'}",
                f"--exec-root={self.workdir / 'exec'}",
                f"--pidfile={self.workdir / 'dockerd.pid'}",
                f"--host=unix://{self.socket}",
                # No docker0, no NAT, no iptables rules: builds run with --network host.
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                # Sandboxes refuse a negative oom_score_adj (dockerd's default is -500).
                "--oom-score-adjust=0",
            ],
            log_path=self.workdir / "dockerd.log",
        )
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            self.dockerd.check_running()
            if time.monotonic() > deadline:
                raise self.dockerd.fail("dockerd did not answer within 60s")
            time.sleep(0.5)
        return self

    def docker(self, *args: str, check: bool = True,
               log_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        # The client shipped with the daemon (docker.io), so their API versions match.
        client = shutil.which("docker", path="/usr/bin") or _need("docker", "docker.io")
        argv = [client, f"--host=unix://{self.socket}", *args]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_BUILDKIT": "0",
               "HOME": str(self.workdir)}
        if log_path is not None:
            _run(argv, log_path, env=env)
            return subprocess.CompletedProcess(argv, 0, "", "")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise ProvisionError(f"`docker {' '.join(args)}` failed: {proc.stderr[-2000:]}")
        return proc

    def stop(self) -> None:
        own, self._own_workdir = self._own_workdir, False
        super().stop()
        self._own_workdir = own
        # dockerd unmounts its layers on a clean stop; after a kill, sweep what is left.
        unmount_under(self.workdir)
        if own:
            procs.remove_workdir(self.workdir)


def context_digest(base: Path) -> str:
    """A hash of what the image is built from: the Dockerfile, the files of the build
    context (.dockerignore keeps pyproject.toml, constraints.txt, README.md, operator/) and
    the base's stamp. Equal digests: the saved image is current."""
    digest = hashlib.sha256()
    files = [ROOT / n for n in ("Dockerfile", "pyproject.toml", "constraints.txt", "README.md")]
    files += sorted(p for p in (ROOT / "operator").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                    and ".egg-info" not in str(p))
    for path in [*files, base.with_name(base.name + ".stamp")]:
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name)
                      .encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_image(tag: str = DEFAULT_TAG, *, force: bool = False, force_base: bool = False,
                log: Log = print) -> Path:
    """Build the Dockerfile on the local base; return the saved image tarball. Reused
    when nothing it is built from changed (``force`` builds anyway)."""
    base = base_tarball(force=force_base, log=log)
    outdir = cache_dir() / "image"
    build_log = outdir / "build.log"
    output = outdir / (tag.replace("/", "_").replace(":", "_") + ".tar")
    stamp = output.with_name(output.name + ".stamp")
    wanted = f"{tag} {context_digest(base)}\n"
    if not force and output.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        log(f"{tag}: {output} is current")
        return output
    started = time.monotonic()
    with DockerDaemon() as daemon:
        log(f"importing the base as {BASE_TAG}")
        daemon.docker("import", str(base), BASE_TAG, log_path=build_log)
        log(f"building {tag} from {ROOT / 'Dockerfile'} (legacy builder, host network)")
        revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip() or "unknown"
        daemon.docker(
            "build", "--network=host", f"--tag={tag}",
            f"--build-arg=PYTHON_IMAGE={BASE_TAG}",
            f"--build-arg=EXTRA_CA_CERTS={extra_ca_certs()}",
            f"--build-arg=REVISION={revision}",
            f"--build-arg=CREATED={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
            str(ROOT),
            log_path=build_log,
        )
        tmp = output.with_name(output.name + ".tmp")
        daemon.docker("save", f"--output={tmp}", tag, log_path=build_log)
        tmp.replace(output)
    stamp.write_text(wanted)
    log(f"  {tag} saved to {output} in {time.monotonic() - started:.0f}s")
    return output
