"""Facts about the machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ["certdepot", "kopf", "kubernetes", "httpx", "uvicorn", "starlette", "sqlalchemy",
            "psycopg", "cryptography", "joserfc", "pydantic"]
BINARIES = {"kube-apiserver": ["--version"], "etcd": ["--version"], "kubectl":
            ["version", "--client"], "pebble": ["-version"]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def facts() -> dict[str, Any]:
    from certdepot.testenv import provision

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    binaries = {}
    for name, args in BINARIES.items():
        try:
            binaries[name] = _first_line([str(provision.binary(name)), *args])
        except Exception as exc:  # a missing binary is a fact too
            binaries[name] = f"missing ({exc})"
    try:
        from certdepot.testenv import certmanager_assets as cma

        stamp = cma.controller_binary().with_suffix(".stamp")
        # The controller has no --version; its provisioning stamp names version and origin.
        binaries["cert-manager-controller"] = " ".join(stamp.read_text().split()[:2]) + \
            f" ({cma.controller_binary()})"
    except Exception as exc:
        binaries["cert-manager-controller"] = f"missing ({exc})"
    try:
        from certdepot.testenv.system import find_pg_bindir

        bindir = find_pg_bindir()
        binaries["postgres"] = _first_line([str(bindir / "postgres"), "--version"]) \
            if bindir else "missing"
    except Exception as exc:
        binaries["postgres"] = f"unknown ({exc})"
    root = str(Path(__file__).resolve().parents[1])
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "operator"],
                           capture_output=True, text=True).stdout.splitlines()
    return {
        "git_commit": _first_line(["git", "-C", root, "rev-parse", "HEAD"]),
        # Uncommitted changes to the code under test (other work in the same checkout).
        "git_uncommitted_source_files": len(dirty),
        "cpu_model": _cpu_model(), "cpus": os.cpu_count(), "mem_total_mb": _mem_total_mb(),
        "kernel": platform.release(), "os": platform.platform(),
        "python": platform.python_version(), "packages": versions, "binaries": binaries,
    }
