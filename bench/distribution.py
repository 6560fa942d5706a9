"""(a) N CertificateDownloads over 20 namespaces, apply -> all Ready with valid Secrets.

Baseline in the same run: one Python client creating the same Secrets directly (the
floor for writing N Secrets into this API server on this machine).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import apimetrics, procstat
from bench.kube import RUN_LABEL, ReadyWatch, create_all, create_namespaces
from bench.secrets_check import check_all
from bench.stack import CLUSTER_REPOSITORY, Stack

NAMESPACES = 20
Echo = Callable[[str], None]


def bodies(run: str, n: int, certs: dict[str, list[str]],
           repository: str = CLUSTER_REPOSITORY) -> list[dict[str, Any]]:
    names = list(certs.values())
    out = []
    for i in range(n):
        out.append({
            "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
            "metadata": {"name": f"cd-{i}", "namespace": f"{run}-ns{i % NAMESPACES}",
                         "labels": {RUN_LABEL: run}},
            "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository",
                                       "name": repository},
                     "dnsNames": names[i % len(names)], "secretName": f"cd-{i}-tls"},
        })
    return out


def run_downloads(stack: Stack, api: Any, n: int, rep: int, certs: dict[str, list[str]],
                  timeout: float, tag: str = "dl", repository: str = CLUSTER_REPOSITORY,
                  repository_process: str = "repository-main") -> dict[str, Any]:
    kube = stack.kube
    assert kube is not None
    run = f"{tag}{n}-{rep}"
    create_namespaces(api, [f"{run}-ns{i}" for i in range(NAMESPACES)])
    docs = bodies(run, n, certs, repository)
    expected = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
    before = apimetrics.scrape(kube)
    watch = ReadyWatch(api, "certificatedownloads", run, expected, timeout)
    # cert-manager's controller, when it runs (the comparison), idles here: its cost shows.
    pids = {k: v for k, v in stack.pids().items()
            if k in ("operator", repository_process, "kube-apiserver", "etcd",
                     "cert-manager-controller")}
    with procstat.Watch(pids) as usage:
        began = time.monotonic()
        watch.start()
        create_all(api, "certificatedownloads", docs)
        applied = time.monotonic() - began
        watch.wait(stack.check_alive)
        wall = max(watch.ready_at.values()) - began
    after = apimetrics.scrape(kube)
    own = watch.own + Counter({("POST", "certificatedownloads", ""): n})
    requests = apimetrics.per_item(apimetrics.delta(before, after, own), n)
    wanted = {(d["metadata"]["namespace"], d["spec"]["secretName"]): d["spec"]["dnsNames"]
              for d in docs}
    secrets = check_all(api, wanted)
    if secrets["valid"] != n:
        raise AssertionError(f"{run}: only {secrets['valid']}/{n} valid Secrets: "
                             f"{secrets['problems']}")
    return {
        "n": n, "wall_s": wall, "apply_s": applied, "certs_per_s": n / wall,
        "api_requests_per_cert": requests, "secrets": secrets,
        "cpu_s": {k: round(v, 3) for k, v in usage.cpu.items()},
        "operator_peak_rss_mb": round(usage.peak_rss.get("operator", 0) / 2**20, 1),
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in usage.peak_rss.items()},
        "load_average": procstat.load_average(),
    }


def run_baseline(stack: Stack, api: Any, n: int, rep: int, sample: Any,
                 tag: str = "base") -> dict[str, Any]:
    """One client, one Secret at a time, the same data the operator wrote."""
    from kubernetes import client

    kube = stack.kube
    assert kube is not None
    core: Any = client.CoreV1Api(api)
    run = f"{tag}{n}-{rep}"
    create_namespaces(api, [f"{run}-ns{i}" for i in range(NAMESPACES)])
    data = dict(sample.data)
    before = apimetrics.scrape(kube)
    began = time.monotonic()
    for i in range(n):
        core.create_namespaced_secret(f"{run}-ns{i % NAMESPACES}", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": f"s-{i}-tls"}, "data": data})
    wall = time.monotonic() - began
    after = apimetrics.scrape(kube)
    requests = apimetrics.per_item(apimetrics.delta(before, after), n)
    return {"n": n, "wall_s": wall, "certs_per_s": n / wall,
            "api_requests_per_cert": requests}


def sample_secret(api: Any, n: int, tag: str = "dl") -> Any:
    from kubernetes import client

    return client.CoreV1Api(api).read_namespaced_secret("cd-0-tls", f"{tag}{n}-0-ns0")
