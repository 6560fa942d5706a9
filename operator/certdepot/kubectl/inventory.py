"""``kubectl certdepot inventory``: who holds which serial, as the repository reports it.

A thin client of ``certdepot repository inventory --json`` (the repository's own report;
it needs the store, so it runs where the repository's configuration and key-encryption
key are): locally with ``--repository-config``, else through ``kubectl exec`` in the
repository's pod. The plugin relies on this shape of each entry, and passes every other
field through to ``-o json|yaml`` untouched::

    {"name": str, "dns_names": [str], "issuer": str,
     "current": {"serial": str, "not_after": float} | null,
     "last_error": str | null,
     "certificates": [{"serial": str, "not_before": float, "not_after": float,
                       "revoked": bool,
                       "deliveries": [{"tenant": str, "account_id": str,
                                       "delivered": float}]}]}

Times are Unix seconds. A *holder* is a (tenant, ACME account) pair, one account per
cluster's operator; what it holds is the serial of its latest delivery.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Where the chart mounts the repository's configuration in its pod.
CHART_CONFIG = "/etc/certdepot/config/config.yaml"
TIMEOUT = 60.0


class InventoryError(Exception):
    """The repository's inventory could not be read."""


def local_command(config: str) -> list[str]:
    """Run the repository CLI of this installation against a configuration file."""
    return [sys.executable, "-m", "certdepot", "repository", "inventory", "--json",
            "--config", config]


def exec_command(target: str, namespace: str, container: str, config: str,
                 kubectl: str = "kubectl", kube_args: Sequence[str] = ()) -> list[str]:
    """Run the repository CLI inside the repository's pod (``deploy/<name>`` or a pod)."""
    return [kubectl, *kube_args, "exec", "-n", namespace, target, "-c", container, "--",
            "certdepot", "repository", "inventory", "--json", "--config", config]


def read(argv: Sequence[str]) -> list[dict[str, Any]]:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InventoryError(f"cannot run {argv[0]}: {type(exc).__name__}") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InventoryError(f"the repository's inventory failed (exit {res.returncode}): "
                             f"{last}")
    try:
        data = json.loads(res.stdout)
    except ValueError:
        raise InventoryError("the repository's inventory is not JSON") from None
    if not isinstance(data, list):
        raise InventoryError("the repository's inventory is not a list of certificates")
    return [dict(e) for e in data if isinstance(e, Mapping)]


def holders(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each (tenant, account) and the serial of its latest delivery, with whether that
    serial is still the entry's current one."""
    current = (entry.get("current") or {}).get("serial")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for cert in entry.get("certificates") or ():
        for d in cert.get("deliveries") or ():
            key = (str(d.get("tenant")), str(d.get("account_id")))
            seen = latest.get(key)
            if seen is None or float(d.get("delivered") or 0) >= seen["delivered"]:
                latest[key] = {"tenant": key[0], "account": key[1], "serial": cert.get("serial"),
                               "delivered": float(d.get("delivered") or 0)}
    out = sorted(latest.values(), key=lambda h: (h["tenant"], h["account"]))
    for h in out:
        h["current"] = current is not None and h["serial"] == current
    return out


def report(entries: Sequence[Mapping[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The entries asked for (all, or the one named), each with its holders added."""
    chosen = [e for e in entries if name is None or e.get("name") == name]
    return [{**e, "holders": holders(e)} for e in chosen]
