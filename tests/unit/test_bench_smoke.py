"""Smoke test of the benchmark harness (bench/): tiny sizes, in-process repository.

The real benchmark starts kube-apiserver, Pebble, PostgreSQL and the repository as
processes (``make bench``); this checks in seconds that the measuring code runs real
sessions against the real repository app and that the results it builds have the shape
the README, docs/performance.md and the chart rely on, with positive figures.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

# bench/ is a top-level package of the checkout, run as `python -m bench` from its root;
# pytest does not put the root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import apimetrics, report, stats
from bench import throughput as tp
from bench.stack import (
    CLUSTER_TENANT,
    DOMAIN,
    managed_names,
    repository_config,
)

from certdepot.repository import renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.config import parse_config
from certdepot.repository.tenants import create_tenant

BASE = "https://127.0.0.1:1"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "kek").write_text(base64.b64encode(os.urandom(32)).decode())
    cfg = repository_config(tmp_path, 1, f"sqlite:///{tmp_path / 'r.db'}", certificates=2,
                            upstream=None, economy_tenants=0)
    repo = build_repo(parse_config(cfg))
    yield repo
    for task in list(repo.tasks):
        task.cancel()
    repo.store.close()


async def test_sessions_and_report(repo: Any, tmp_path: Path) -> None:
    creds = create_tenant(repo.store, repo.vault, CLUSTER_TENANT)
    eab = (creds.kid, creds.hmac_key)
    await renewal.run_once(repo)  # the managed certificates a download session fetches
    app = create_app(repo)

    def transport() -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=app)

    names = list(managed_names(2).values())
    url = f"{BASE}/directory"
    download = await tp.measure(url, True, eab, tp.download_session(names), 2, 0.2, 2,
                                os.getpid(), transport)
    plain = await tp.measure(url, True, eab, tp.plain_session(f"plain.{DOMAIN}"), 2, 0.2,
                             2, None, transport)
    for level in (download, plain):
        assert level["error_count"] == 0, level["errors"]
        assert level["sessions"] > 0
        assert level["sessions_per_s"]["n"] == 2 and level["sessions_per_s"]["median"] > 0
        assert 0 < level["latency_s"]["p50"] <= level["latency_s"]["p99"]

    # The results a full run writes, with these measured levels in place of the others.
    results: dict[str, Any] = {
        "throughput": {"download": {"sqlite": [{**download, "concurrency": 16}]},
                       "plain": {"repository-sqlite": [plain], "pebble": [plain]}},
        "distribution": {"100": {"operator": [], "baseline": [], "summary": {
            key: stats.summary([1.0, 2.0]) for key in (
                "wall_s", "certs_per_s", "writes_per_cert", "requests_per_cert",
                "operator_cpu_s", "repository_cpu_s", "operator_peak_rss_mb",
                "baseline_certs_per_s", "baseline_wall_s")}}},
        "economy": {"tenants": 2, "namespaces_per_tenant": 2,
                    "orders_at_pebble_while_serving": 0, "orders_per_renewal": [1]},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "machine": {"cpus": 2, "cpu_model": "test"},
    }
    results["targets"] = report.targets(results)
    kinds = {t["target"] for t in results["targets"]}
    assert ">= 300 download sessions/s at 16 clients (sqlite)" in kinds
    assert "exactly one upstream order per renewal" in kinds
    assert all(isinstance(t["met"], bool) for t in results["targets"])
    json.loads(json.dumps(results))  # serialisable as written
    text = report.table(results)
    assert "(c) download sqlite c=16" in text and "target:" in text
    chart = report.chart(results, tmp_path / "chart.png")
    if chart is not None:  # matplotlib is the optional `bench` extra
        assert chart.stat().st_size > 1000


def test_apiserver_metrics_delta() -> None:
    line = ('apiserver_request_total{code="201",component="apiserver",dry_run="",group="",'
            'resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 7')
    assert apimetrics._LINE.match(line)
    before: Counter[apimetrics.Key] = Counter({("POST", "secrets", ""): 3})
    after: Counter[apimetrics.Key] = Counter({("POST", "secrets", ""): 13,
                                              ("PATCH", "x", "status"): 4,
                                              ("LIST", "x", ""): 2})
    own: Counter[apimetrics.Key] = Counter({("LIST", "x", ""): 2})
    per = apimetrics.per_item(apimetrics.delta(before, after, own), 2)
    assert per["writes"] == 7.0 and per["by_verb"] == {"PATCH": 2.0, "POST": 5.0}
    assert per["writes_excluding_leases"] == 7.0


def test_stats() -> None:
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    s = stats.summary([2.0, 4.0, 3.0])
    assert s["median"] == 3.0 and s["min"] == 2.0 and s["spread_pct"] == pytest.approx(33.3)
