"""(d) Upstream economy: K tenants x M namespaces ask for one certificate; Pebble counts.

K simulated consumer clusters are K ClusterCertificateRepositories, each bound to its own
tenant (its own EAB key, so its own ACME account at the repository) and selecting its own
M namespaces, each holding a CertificateDownload of the same managed certificate. The
figure is Pebble's own count of orders (its log says "Added order" once per newOrder)
while all K x M are served, and again across R forced renewals, after each of which every
Secret must carry the new serial (the operators learn of it through ARI).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.kube import GROUP, RUN_LABEL, VERSION, ReadyWatch, create_all, create_namespaces
from bench.stack import DOMAIN, SHARED_CERT, Repository, Stack, child_env

TENANT_LABEL = "bench.certdepot.io/tenant"


def pebble_orders(log: Path) -> int:
    """How many orders Pebble has accepted since it started (one log line each)."""
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if "Added order" in line)


def _serials(api: Any, run: str) -> dict[tuple[str, str], str | None]:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(api)
    items = custom.list_cluster_custom_object(
        GROUP, VERSION, "certificatedownloads", label_selector=f"{RUN_LABEL}={run}")["items"]
    return {(o["metadata"]["namespace"], o["metadata"]["name"]):
            (o.get("status") or {}).get("serial") for o in items}


def renew(repo: Repository) -> None:
    subprocess.run([sys.executable, "-m", "certdepot.cli", "repository", "renew", "--config",
                    str(repo.config_path), SHARED_CERT], check=True, capture_output=True,
                   text=True, timeout=60, env={**os.environ, **child_env()})


def run_economy(stack: Stack, api: Any, repo: Repository, pebble_log: Path, tenants: int,
                namespaces: int, renewals: int, timeout: float) -> dict[str, Any]:
    run = f"econ{tenants}x{namespaces}"
    for k in range(tenants):
        stack.cluster_repository(repo, f"econ-{k}", f"econ-{k}", {TENANT_LABEL: str(k)})
        create_namespaces(api, [f"{run}-t{k}-ns{m}" for m in range(namespaces)],
                          {TENANT_LABEL: str(k)})
    docs: list[dict[str, Any]] = [{
        "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
        "metadata": {"name": "shared", "namespace": f"{run}-t{k}-ns{m}",
                     "labels": {RUN_LABEL: run}},
        "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository",
                                   "name": f"econ-{k}"},
                 "dnsNames": [f"{SHARED_CERT}.{DOMAIN}"], "secretName": "shared-tls"},
    } for k in range(tenants) for m in range(namespaces)]
    expected = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
    orders_at_start = pebble_orders(pebble_log)
    watch = ReadyWatch(api, "certificatedownloads", run, expected, timeout).start()
    began = time.monotonic()
    create_all(api, "certificatedownloads", docs)
    watch.wait(stack.check_alive)
    served_s = max(watch.ready_at.values()) - began
    orders_serving = pebble_orders(pebble_log) - orders_at_start
    serials = _serials(api, run)
    rounds = []
    for _ in range(renewals):
        old = set(serials.values())
        before = pebble_orders(pebble_log)
        began = time.monotonic()
        renew(repo)
        deadline = began + timeout
        while True:
            stack.check_alive()
            serials = _serials(api, run)
            values = set(serials.values())
            if len(values) == 1 and not values & old and None not in values:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{run}: after renewal serials are {values} (old {old})")
            time.sleep(0.5)
        rounds.append({"orders": pebble_orders(pebble_log) - before,
                       "all_rolled_s": round(time.monotonic() - began, 2),
                       "distinct_serials": len(values)})
    return {
        "tenants": tenants, "namespaces_per_tenant": namespaces, "downloads": len(docs),
        "orders_at_pebble_while_serving": orders_serving, "all_ready_s": round(served_s, 2),
        "renewals": rounds, "orders_per_renewal": [r["orders"] for r in rounds],
        "orders_total_at_pebble": pebble_orders(pebble_log),
    }
