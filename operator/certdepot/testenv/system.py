"""System packages the test environment needs (PostgreSQL, Knot DNS, the standard ACME
clients lego and dehydrated; for the one-node cluster containerd, runc, CNI plugins,
docker.io, mmdebstrap), found or installed.

These come from the distribution, not from Go modules: when one is missing and we are root
on a machine with apt-get, :func:`ensure_system_tools` installs it; otherwise it fails with
the package names to install.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from certdepot.testenv.provision import ProvisionError

__all__ = [
    "ensure_node_tools",
    "ensure_system_tools",
    "find_knotd",
    "find_node_tool",
    "find_pg_bindir",
    "service_user",
]

APT_PACKAGES = {"postgresql": "postgresql", "knotd": "knot"}
# Standard ACME clients the integration tests run against the repository: executable ->
# Debian package. Debian's own builds are what users of those distributions get.
CLIENT_PACKAGES = {"lego": "lego", "dehydrated": "dehydrated"}


def find_pg_bindir() -> Path | None:
    """The directory holding initdb and postgres: $PG_BINDIR, PATH, or Debian's layout."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured)
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    # Debian keeps them off PATH in /usr/lib/postgresql/<major>/bin; take the newest.
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def find_knotd() -> Path | None:
    """knotd from $KNOTD, PATH or /usr/sbin (not on a normal user's PATH on Debian)."""
    configured = os.environ.get("KNOTD")
    if configured:
        return Path(configured)
    found = shutil.which("knotd") or shutil.which("knotd", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def service_user(preferred: str) -> str | None:
    """The account to run a server as: None when we are not root (run as ourselves).

    As root, PostgreSQL refuses to start at all, and nothing else needs root either, so use
    ``preferred`` (the distribution's service account) or ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ProvisionError(f"running as root but neither {preferred!r} nor 'nobody' exists")


def give_to(path: Path, user: str | None) -> None:
    """chown -R ``path`` to ``user`` (no-op when ``user`` is None)."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def missing_tools() -> list[str]:
    missing = []
    if find_pg_bindir() is None:
        missing.append("postgresql")
    if find_knotd() is None:
        missing.append("knotd")
    return missing + missing_clients()


def missing_clients() -> list[str]:
    """The standard ACME clients (:data:`CLIENT_PACKAGES`) not on PATH."""
    return [name for name in CLIENT_PACKAGES if shutil.which(name) is None]


def ensure_system_tools(*, install: bool = True, log: Callable[[str], None] = print) -> None:
    packages = {**APT_PACKAGES, **CLIENT_PACKAGES}
    _ensure({m: packages[m] for m in missing_tools()}, missing_tools, install, log,
            hint=" or point PG_BINDIR at the directory holding initdb/postgres and KNOTD at knotd"
            " (lego and dehydrated must be on PATH)")


def _ensure(
    missing: dict[str, str],
    recheck: Callable[[], list[str]],
    install: bool,
    log: Callable[[str], None],
    *,
    hint: str = "",
) -> None:
    if not missing:
        return
    packages = sorted(set(missing.values()))
    can_install = install and os.geteuid() == 0 and shutil.which("apt-get") is not None
    if not can_install:
        raise ProvisionError(
            f"missing system packages: {' '.join(packages)} (Debian/Ubuntu names). Install "
            f"them, e.g. `sudo apt-get install {' '.join(packages)}`{',' if hint else ''}"
            f"{hint}."
        )
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisionError(f"`{' '.join(args)}` failed:\n{proc.stderr[-2000:]}")
    still = recheck()
    if still:
        raise ProvisionError(f"still missing after apt-get install: {', '.join(still)}")


# The one-node cluster (testenv/node.py) and `make image`: what runs pods and builds the
# image, from the distribution. tool -> Debian package.
NODE_APT_PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "dockerd": "docker.io",
    "mmdebstrap": "mmdebstrap",
}
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_node_tool(tool: str) -> Path | None:
    """A tool of :data:`NODE_APT_PACKAGES` (an absolute path is a file to look for)."""
    if tool.startswith("/"):
        return Path(tool) if Path(tool).exists() else None
    found = shutil.which(tool) or shutil.which(tool, path=SBIN_PATH)
    return Path(found) if found else None


def missing_node_tools() -> list[str]:
    return [t for t in NODE_APT_PACKAGES if find_node_tool(t) is None]


def ensure_node_tools(*, install: bool = True, log: Callable[[str], None] = print) -> None:
    """containerd, runc, the CNI plugins, iptables, conntrack, docker.io and mmdebstrap:
    apt-get installs the missing ones as root, else the error names the packages."""
    missing = {t: NODE_APT_PACKAGES[t] for t in missing_node_tools()}
    _ensure(missing, missing_node_tools, install, log)
