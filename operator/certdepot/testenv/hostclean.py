"""What a container runtime leaves on the host, found and removed: mounts under a work
directory, network namespaces, links and iptables rules (used by image.py and node.py)."""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

__all__ = ["chain_rules", "iptables_chains", "link_exists", "mounts_under", "unmount_under"]


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first, the order to unmount them in)."""
    root = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = _unescape(line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_under(path: Path) -> list[str]:
    """Unmount everything at or below ``path``; returns what could not be unmounted."""
    for _ in range(3):
        points = mounts_under(path)
        if not points:
            return []
        for point in points:
            # Lazy: a mount whose user is already gone may still be briefly busy.
            subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(path)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> None:
    if link_exists(name):
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


def iptables_chains(table: str) -> set[str]:
    """The chain names of one iptables table (empty if iptables is missing)."""
    try:
        out = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True,
                             text=True).stdout
    except FileNotFoundError:
        return set()
    return {line.split()[1] for line in out.splitlines() if line.startswith(("-N ", "-P "))}


def chain_rules(table: str) -> list[str]:
    """Every rule of a table as ``iptables -S`` prints it."""
    with contextlib.suppress(FileNotFoundError):
        return subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True,
                              text=True).stdout.splitlines()
    return []
