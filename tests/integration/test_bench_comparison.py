"""The benchmark's cert-manager phase (issue 21) through the real stack at a tiny N: the
kube-apiserver, cert-manager's controller with a CA ClusterIssuer, the repository and the
operator, as ``make bench`` runs them. Every Secret of every system is read back and
verified by the phase itself (a run with one invalid Secret raises); here the figures it
reports must say what the two systems did."""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is a top-level package of the checkout; pytest does not put the root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import __main__ as bench_main

N = 5


def test_comparison_phase_measures_both_systems(tmp_path: Path) -> None:
    args = bench_main.parse_args(["--quick", "--phases", "comparison", "--compare-sizes",
                                  str(N), "--repeats", "1", "--out", str(tmp_path)])
    results = bench_main.Bench(args, lambda line: print(line, flush=True)).run()
    assert results["errors"] == {}, results["errors"]
    rounds = results["comparison"][str(N)]["rounds"]
    assert len(rounds) == 1
    r = rounds[0]
    for system in ("cert-manager", "downloads", "delegated"):
        assert r[system]["n"] == N and r[system]["certs_per_s"] > 0, r[system]
    assert r["delegated"]["secrets_valid"] == N
    assert r["downloads"]["secrets"]["valid"] == N
    # cert-manager's work shows in its own process and in its own objects' requests.
    cm = r["cert-manager"]
    assert cm["secrets_valid"] == N
    assert cm["cpu_s"]["cert-manager-controller"] > 0
    detail = cm["api_requests_per_cert"]["detail_total"]
    assert detail.get("POST certificaterequests", 0) >= N, detail
    # certdepot: one Secret and one status write per certificate, none of cert-manager's.
    dl = r["downloads"]["api_requests_per_cert"]["detail_total"]
    assert dl.get("POST secrets") == N and dl.get("PATCH certificatedownloads/status") == N, dl
    assert not any("certificaterequests" in key for key in dl), dl
    ratios = results["comparison"][str(N)]["summary"]["ratios"]
    assert ratios["downloads_vs_cert_manager_rate"] > 0
    assert ratios["writes_per_cert"]["cert-manager"] > ratios["writes_per_cert"]["downloads"]
