"""The cert-manager comparison's pure parts (bench/comparison.py): the Certificates it
creates, the summaries, the ratios and the targets and rows the report builds from them.

The phase itself runs real processes (``make bench``); these check the arithmetic the
README and docs/performance.md quote, from run records of the shape the phase writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import comparison, report
from bench.kube import RUN_LABEL


def _run(rate: float, writes: float, verbs: dict[str, float], proc: str,
         cpu: float, rss: float) -> dict[str, Any]:
    return {"n": 100, "wall_s": 100 / rate, "certs_per_s": rate,
            "api_requests_per_cert": {"writes": writes, "total": writes + 1,
                                      "by_verb": verbs},
            "cpu_s": {proc: cpu, "kube-apiserver": 2 * cpu},
            "peak_rss_mb": {proc: rss, "kube-apiserver": 400.0}}


def _rounds() -> list[dict[str, Any]]:
    """Three rounds: cert-manager 10-12/s, downloads 50-70/s, delegated 20-30/s, floor
    100-200/s (each a value of its own, so a mix-up of runs shows)."""
    out = []
    for cm, dl, dg, floor in ((10.0, 60.0, 20.0, 100.0), (12.0, 70.0, 30.0, 200.0),
                              (11.0, 50.0, 25.0, 150.0)):
        out.append({
            "cert-manager": _run(cm, 18.0, {"POST": 9.0, "PUT": 9.0, "GET": 3.0},
                                 "cert-manager-controller", 5.0, 90.0 + cm),
            "downloads": _run(dl, 3.0, {"POST": 2.0, "PATCH": 1.0, "GET": 1.0},
                              "operator", 4.0, 140.0 + dl),
            "delegated": _run(dg, 3.0, {"POST": 2.0, "PATCH": 1.0, "GET": 1.0},
                              "operator", 6.0, 150.0),
            "floor": {"certs_per_s": floor},
        })
    return out


def test_summary_medians_and_ratios() -> None:
    s = comparison.summarise(_rounds())
    assert s["cert-manager"]["certs_per_s"]["median"] == 11.0
    assert s["downloads"]["certs_per_s"]["median"] == 60.0
    assert s["floor"]["certs_per_s"]["median"] == 150.0
    # Share of the floor run by run (60/100, 70/200, 50/150), then the median.
    assert s["downloads"]["pct_of_floor"]["values"] == pytest.approx([60.0, 35.0, 33.333333])
    assert s["downloads"]["pct_of_floor"]["median"] == pytest.approx(35.0)
    assert s["cert-manager"]["by_verb_per_cert"] == {"GET": 3.0, "POST": 9.0, "PUT": 9.0}
    assert s["cert-manager"]["peak_rss_mb"]["cert-manager-controller"] == 102.0
    r = s["ratios"]
    assert r["downloads_vs_cert_manager_rate"] == pytest.approx(60.0 / 11.0, abs=0.01)
    assert r["delegated_vs_cert_manager_rate"] == pytest.approx(25.0 / 11.0, abs=0.01)
    assert r["writes_per_cert"] == {"cert-manager": 18.0, "downloads": 3.0, "delegated": 3.0}
    assert r["controller_cpu_s"] == {"cert-manager": 5.0, "downloads": 4.0, "delegated": 6.0}
    assert r["controller_peak_rss_mb"]["downloads"] == 210.0
    json.dumps(s)  # written as JSON as it is


def test_targets_and_rows_from_the_comparison(tmp_path: Path) -> None:
    results: dict[str, Any] = {"comparison": {"1000": {"rounds": _rounds(),
                                                       "summary": comparison.summarise(
                                                           _rounds())}}}
    targets = {t["target"]: t for t in report.targets(results)}
    five_x = next(t for k, t in targets.items() if "5x cert-manager" in k)
    assert five_x["measured"] == pytest.approx(5.45, abs=0.01) and five_x["met"] is True
    floor = next(t for k, t in targets.items() if "distinct" in k and "floor" in k)
    assert floor["measured"] == 35.0 and floor["met"] is False
    text = report.table({**results, "targets": list(targets.values())})
    assert "(e) N=1000 cert-manager Certificates (CA ClusterIssuer): certs/s" in text
    assert "5.45x cert-manager" in text and "MISSED" in text and "MET" in text
    chart = report.chart(results, tmp_path / "chart.png")
    if chart is not None:  # matplotlib is the optional `bench` extra
        assert chart.stat().st_size > 1000


def test_floor_and_large_targets_from_distribution() -> None:
    def summary(values: list[float]) -> dict[str, Any]:
        return {"median": sorted(values)[len(values) // 2], "values": values,
                "min": min(values), "max": max(values)}

    dist = {
        "1000": {"summary": {"certs_per_s": summary([60.0]),
                             "baseline_certs_per_s": summary([150.0])}},
        "10000": {"summary": {"certs_per_s": summary([70.0]),
                              "operator_peak_rss_mb": summary([320.0])}},
    }
    targets = {t["target"]: t for t in report._floor_targets(dist, {})}
    assert targets[">= 60% of the floor, 1000 CertificateDownloads (10 shared "
                   "certificates)"]["measured"] == 40.0
    rss = targets["N=10000: operator peak RSS <= 300 MB"]
    assert rss["measured"] == 320.0 and rss["met"] is False
    assert targets["N=10000 rate not below the N=1000 rate"]["met"] is True


def test_certificate_bodies_are_distinct_and_labelled() -> None:
    bodies = comparison.certificate_bodies("cm5-0", 45)
    assert len(bodies) == 45
    names = [tuple(b["spec"]["dnsNames"]) for b in bodies]
    assert len(set(names)) == 45  # each its own certificate
    assert len({b["metadata"]["namespace"] for b in bodies}) == comparison.NAMESPACES
    first = bodies[0]
    assert first["metadata"]["labels"] == {RUN_LABEL: "cm5-0"}
    assert first["spec"]["issuerRef"] == {"name": comparison.CM_ISSUER,
                                          "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert first["spec"]["privateKey"] == {"algorithm": "ECDSA", "size": 256}


def test_cert_manager_args_lift_throttling() -> None:
    assert comparison.cert_manager_args(7, 5000) == [
        "--kube-api-qps=5000", "--kube-api-burst=5000", "--concurrent-workers=7"]


def test_wait_quiet_returns_once_idle_and_gives_up_at_the_timeout() -> None:
    import os

    from bench import procstat

    me = {"self": os.getpid()}
    assert procstat.wait_quiet(me, below=100.0, window=0.05) < 1.0  # idle enough at once
    # Never quiet below 0 cores: returns at the timeout, not later.
    assert 0.2 <= procstat.wait_quiet(me, below=0.0, window=0.1, timeout=0.2) < 1.0
