"""(e) cert-manager next to certdepot, same N, same API server, runs alternating.

Per round and size: N cert-manager Certificates from a CA ClusterIssuer (cert-manager's
controller out of cluster, as the operator runs), then N CertificateDownloads that each
name a certificate of their own (one download session each: the operator runs with
``--download-reuse-seconds 0``), then the floor (one client writing the same N Secrets),
then N DelegatedCertificates through the local-ca delegation. Each run is timed like (a):
from the first create until one watch has seen the last object Ready, then every Secret
is read and checked. The pure parts (bodies, summaries, ratios) are unit-tested.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from bench import apimetrics, delegated, distribution, procstat, stats
from bench.kube import RUN_LABEL, ReadyWatch, create_all, create_namespaces
from bench.secrets_check import check_all
from bench.stack import DELEGATION_LOCAL, Stack, managed_names

CM_GROUP, CM_VERSION = "cert-manager.io", "v1"
CM_ISSUER = "bench-ca"
CM_NAMESPACE = "cert-manager"  # the controller's cluster resource namespace
REPOSITORY = "bench-cmp"  # the ClusterCertificateRepository of the comparison's repository
REPOSITORY_PROCESS = "repository-cmp"
NAMESPACES = 20
SYSTEMS = ("cert-manager", "downloads", "delegated")
# The process that does each system's work (its CPU and peak RSS are the headline).
CONTROLLER = {"cert-manager": "cert-manager-controller", "downloads": "operator",
              "delegated": "operator"}
WARM_UP = 10

Say = Callable[[str], None]
Profiling = Callable[[str, bool], AbstractContextManager[None]]


def cert_manager_args(workers: int, qps: float) -> list[str]:
    """Client-side throttling lifted (certdepot's operator has none) and ``workers`` per
    controller (cert-manager's default is 5)."""
    return [f"--kube-api-qps={qps:g}", f"--kube-api-burst={int(qps)}",
            f"--concurrent-workers={workers}"]


def certificate_bodies(run: str, n: int) -> list[dict[str, Any]]:
    """N Certificates, each its own names (the same two names per certificate as the
    CertificateDownloads' managed certificates), ECDSA P-256, from the CA ClusterIssuer."""
    from certdepot.testenv.certmanager import certificate

    out = []
    for i, names in enumerate(list(managed_names(n).values())[:n]):
        body = certificate(f"{run}-ns{i % NAMESPACES}", f"cm-{i}", names, issuer=CM_ISSUER,
                           secret_name=f"cm-{i}-tls", issuer_kind="ClusterIssuer")
        body["metadata"]["labels"] = {RUN_LABEL: run}
        out.append(body)
    return out


def start_cert_manager(stack: Stack, extra_args: list[str], timeout: float = 60) -> Any:
    """cert-manager's controller, a fresh CA in a Secret and a ClusterIssuer using it."""
    from cryptography.hazmat.primitives import serialization

    from certdepot.testenv.certmanager import ca_cluster_issuer, ca_secret, condition
    from certdepot.testenv.pki import TestCA

    cm = stack.start_cert_manager(extra_args)
    ca = TestCA.create(stack.workdir / "cert-manager-ca", "bench cert-manager CA")
    key_pem = ca.key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    cm.apply(ca_secret(CM_NAMESPACE, CM_ISSUER, ca.cert_path.read_bytes(), key_pem),
             ca_cluster_issuer(CM_ISSUER, CM_ISSUER))
    cm.wait_for("clusterissuer", "", CM_ISSUER,
                lambda o: (condition(o, "Ready") or {}).get("status") == "True",
                timeout=timeout, what="Ready")
    return cm


def _watched(stack: Stack) -> dict[str, int]:
    return {k: v for k, v in stack.pids().items()
            if k in ("operator", REPOSITORY_PROCESS, "kube-apiserver", "etcd",
                     "cert-manager-controller")}


def run_cert_manager(stack: Stack, api: Any, n: int, rep: int, timeout: float,
                     tag: str = "cm") -> dict[str, Any]:
    kube = stack.kube
    assert kube is not None
    run = f"{tag}{n}-{rep}"
    create_namespaces(api, [f"{run}-ns{i}" for i in range(NAMESPACES)])
    docs = certificate_bodies(run, n)
    expected = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
    before = apimetrics.scrape(kube)
    watch = ReadyWatch(api, "certificates", run, expected, timeout, group=CM_GROUP,
                       version=CM_VERSION)
    with procstat.Watch(_watched(stack)) as usage:
        began = time.monotonic()
        watch.start()
        sent = create_all(api, "certificates", docs, group=CM_GROUP, version=CM_VERSION)
        watch.wait(stack.check_alive)
        wall = max(watch.ready_at.values()) - began
    after = apimetrics.scrape(kube)
    own = watch.own + Counter({("POST", "certificates", ""): n})
    requests = apimetrics.per_item(apimetrics.delta(before, after, own), n)
    secrets = check_all(api, {(d["metadata"]["namespace"], d["spec"]["secretName"]):
                              d["spec"]["dnsNames"] for d in docs})
    if secrets["valid"] != n:
        raise AssertionError(f"{run}: only {secrets['valid']}/{n} valid Secrets: "
                             f"{secrets['problems']}")
    return {"n": n, "wall_s": wall, "certs_per_s": n / wall,
            "time_to_ready_s": stats.latency([watch.ready_at[k] - sent[k] for k in expected]),
            "api_requests_per_cert": requests, "secrets_valid": secrets["valid"],
            "cpu_s": {k: round(v, 3) for k, v in usage.cpu.items()},
            "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in usage.peak_rss.items()},
            "load_average": procstat.load_average()}


def _round(stack: Stack, api: Any, n: int, rep: int, timeout: float,
           profiling: Profiling) -> dict[str, Any]:
    """One cert-manager run, then certdepot's downloads, the floor, and delegated."""
    out: dict[str, Any] = {}
    quiet = procstat.wait_quiet(_controllers(stack))
    out["cert-manager"] = run_cert_manager(stack, api, n, rep, timeout)
    out["cert-manager"]["quiet_wait_s"] = round(quiet, 1)
    quiet = procstat.wait_quiet(_controllers(stack))
    with profiling(f"operator-compare-downloads-{n}", rep == 0):
        out["downloads"] = distribution.run_downloads(
            stack, api, n, rep, managed_names(n), timeout, tag="cmpdl",
            repository=REPOSITORY, repository_process=REPOSITORY_PROCESS)
    out["downloads"]["quiet_wait_s"] = round(quiet, 1)
    sample = distribution.sample_secret(api, n, "cmpdl")
    out["floor"] = distribution.run_baseline(stack, api, n, rep, sample, tag="cmpfloor")
    quiet = procstat.wait_quiet(_controllers(stack))
    with profiling(f"operator-compare-delegated-{n}", rep == 0):
        out["delegated"] = delegated.run_delegated(
            stack, api, n, rep, DELEGATION_LOCAL, "local", timeout, tag="cmpdg",
            repository=REPOSITORY, repository_process=REPOSITORY_PROCESS,
            namespaces=NAMESPACES)
    out["delegated"]["quiet_wait_s"] = round(quiet, 1)
    return out


def _controllers(stack: Stack) -> dict[str, int]:
    return {k: v for k, v in _watched(stack).items()
            if k in ("operator", REPOSITORY_PROCESS, "cert-manager-controller")}


def warm_up(stack: Stack, api: Any) -> None:
    """Not recorded: each system's first certificates (accounts, caches, connections)."""
    run_cert_manager(stack, api, WARM_UP, 99, timeout=120, tag="cmwarm")
    distribution.run_downloads(stack, api, WARM_UP, 99, managed_names(WARM_UP), 120,
                               tag="cmpwarm", repository=REPOSITORY,
                               repository_process=REPOSITORY_PROCESS)
    delegated.run_delegated(stack, api, WARM_UP, 99, DELEGATION_LOCAL, "local", 120,
                            tag="cmpdgwarm", repository=REPOSITORY,
                            repository_process=REPOSITORY_PROCESS)


def run_all(stack: Stack, api: Any, sizes: Sequence[int], repeats: int, say: Say,
            profiling: Profiling) -> dict[str, Any]:
    # A restarted operator first resumes every object the earlier phases left (thousands
    # in a full run): that must be over before anything is timed.
    waited = procstat.wait_quiet(_controllers(stack), timeout=900)
    say(f"controllers idle after {waited:.0f} s")
    warm_up(stack, api)
    out: dict[str, Any] = {}
    for n in sizes:
        rounds = []
        for rep in range(repeats):
            r = _round(stack, api, n, rep, max(180.0, n * 0.6), profiling)
            rounds.append(r)
            say(describe(n, rep, r))
        out[str(n)] = {"rounds": rounds, "summary": summarise(rounds)}
    return out


def describe(n: int, rep: int, r: Mapping[str, Any]) -> str:
    parts = [f"compare N={n:5} rep {rep}:"]
    for system in SYSTEMS:
        run = r[system]
        proc = CONTROLLER[system]
        parts.append(f"{system} {run['certs_per_s']:6.1f}/s "
                     f"w/c {run['api_requests_per_cert']['writes']:.2f} "
                     f"cpu {run['cpu_s'].get(proc, 0):.1f}s |")
    parts.append(f"floor {r['floor']['certs_per_s']:6.1f}/s")
    return " ".join(parts)


# --- pure: summaries and ratios (tests/unit/test_bench_comparison_report.py) ----------------------

def _median(values: Iterable[float]) -> float:
    listed = list(values)
    return statistics.median(listed) if listed else 0.0


def summarise_system(runs: Sequence[Mapping[str, Any]], floor: Sequence[float]
                     ) -> dict[str, Any]:
    """Medians [min-max] of one system's runs; its share of the floor run for run."""
    verbs = sorted({v for r in runs for v in r["api_requests_per_cert"]["by_verb"]})
    procs = sorted({p for r in runs for p in r["cpu_s"]})
    return {
        "certs_per_s": stats.summary([r["certs_per_s"] for r in runs]),
        "wall_s": stats.summary([r["wall_s"] for r in runs]),
        "writes_per_cert": stats.summary([r["api_requests_per_cert"]["writes"] for r in runs]),
        "requests_per_cert": stats.summary([r["api_requests_per_cert"]["total"]
                                            for r in runs]),
        "by_verb_per_cert": {v: _median(r["api_requests_per_cert"]["by_verb"].get(v, 0.0)
                                        for r in runs) for v in verbs},
        "cpu_s": {p: stats.summary([r["cpu_s"].get(p, 0.0) for r in runs]) for p in procs},
        "peak_rss_mb": {p: max(r.get("peak_rss_mb", {}).get(p, 0.0) for r in runs)
                        for p in procs},
        "pct_of_floor": stats.summary([r["certs_per_s"] / f * 100
                                       for r, f in zip(runs, floor, strict=True) if f]),
    }


def summarise(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    floor = [r["floor"]["certs_per_s"] for r in rounds]
    out: dict[str, Any] = {s: summarise_system([r[s] for r in rounds], floor)
                           for s in SYSTEMS}
    out["floor"] = {"certs_per_s": stats.summary(floor)}
    out["ratios"] = ratios(out)
    return out


def ratios(summary: Mapping[str, Any]) -> dict[str, Any]:
    """certdepot against cert-manager: rate (ratio of the medians), writes per certificate,
    controller CPU per certificate, and each system's share of the floor."""
    def med(system: str, key: str) -> float:
        return float(summary[system][key]["median"] or 0.0)

    cm_rate = med("cert-manager", "certs_per_s")
    out: dict[str, Any] = {}
    for system in ("downloads", "delegated"):
        out[f"{system}_vs_cert_manager_rate"] = (
            round(med(system, "certs_per_s") / cm_rate, 2) if cm_rate else None)
    out["writes_per_cert"] = {s: med(s, "writes_per_cert") for s in SYSTEMS}
    out["pct_of_floor"] = {s: round(med(s, "pct_of_floor"), 1) for s in SYSTEMS}
    out["controller_cpu_s"] = {s: summary[s]["cpu_s"].get(CONTROLLER[s], {}).get("median")
                               for s in SYSTEMS}
    out["controller_peak_rss_mb"] = {s: summary[s]["peak_rss_mb"].get(CONTROLLER[s])
                                     for s in SYSTEMS}
    return out
