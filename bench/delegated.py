"""(b) N DelegatedCertificates through the repository: local-ca, and Pebble upstream.

Each resource's time to Ready runs from the moment its create was sent to the moment the
watch saw Ready=True; the rate is N over the time until the last one was Ready.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench import apimetrics, procstat, stats
from bench.kube import RUN_LABEL, ReadyWatch, create_all, create_namespaces
from bench.secrets_check import check_all
from bench.stack import CLUSTER_REPOSITORY, DOMAIN, Stack

NAMESPACES = 5


def bodies(run: str, n: int, delegation: str, zone: str,
           repository: str = CLUSTER_REPOSITORY, namespaces: int = NAMESPACES
           ) -> list[dict[str, Any]]:
    return [{
        "apiVersion": "certdepot.io/v1alpha1", "kind": "DelegatedCertificate",
        "metadata": {"name": f"dc-{i}", "namespace": f"{run}-ns{i % namespaces}",
                     "labels": {RUN_LABEL: run}},
        "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository",
                                   "name": repository},
                 "delegation": delegation,
                 "dnsNames": [f"cdn-{run}-{i}.{zone}.{DOMAIN}"],
                 "duration": "24h", "renewBefore": "8h",
                 "privateKey": {"algorithm": "ECDSA", "size": 256},
                 "secretName": f"dc-{i}-tls"},
    } for i in range(n)]


def run_delegated(stack: Stack, api: Any, n: int, rep: int, delegation: str, zone: str,
                  timeout: float, *, tag: str = "dg", repository: str = CLUSTER_REPOSITORY,
                  repository_process: str = "repository-main",
                  namespaces: int = NAMESPACES) -> dict[str, Any]:
    assert stack.kube is not None
    run = f"{tag}{zone}{n}-{rep}"
    create_namespaces(api, [f"{run}-ns{i}" for i in range(namespaces)])
    docs = bodies(run, n, delegation, zone, repository, namespaces)
    expected = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
    watch = ReadyWatch(api, "delegatedcertificates", run, expected, timeout)
    pids = {k: v for k, v in stack.pids().items()
            if k in ("operator", repository_process, "kube-apiserver", "etcd",
                     "cert-manager-controller")}
    before = apimetrics.scrape(stack.kube)
    with procstat.Watch(pids) as usage:
        began = time.monotonic()
        watch.start()
        sent = create_all(api, "delegatedcertificates", docs)
        watch.wait(stack.check_alive)
        wall = max(watch.ready_at.values()) - began
    after = apimetrics.scrape(stack.kube)
    own = watch.own + Counter({("POST", "delegatedcertificates", ""): n})
    requests = apimetrics.per_item(apimetrics.delta(before, after, own), n)
    latencies = [watch.ready_at[k] - sent[k] for k in expected]
    secrets = check_all(api, {(d["metadata"]["namespace"], d["spec"]["secretName"]):
                              d["spec"]["dnsNames"] for d in docs})
    if secrets["valid"] != n:
        raise AssertionError(f"{run}: only {secrets['valid']}/{n} valid Secrets: "
                             f"{secrets['problems']}")
    return {"n": n, "wall_s": wall, "certs_per_s": n / wall,
            "time_to_ready_s": stats.latency(latencies), "secrets_valid": secrets["valid"],
            "cpu_s": {k: round(v, 3) for k, v in usage.cpu.items()},
            "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in usage.peak_rss.items()},
            "api_requests_per_cert": requests}
