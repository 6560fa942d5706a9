"""Every metric of both processes follows Prometheus naming and is listed in
docs/operations.md ("Metrics") with its type and labels; the dashboard and alerts use only
metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from certdepot.controller.ops.metrics import Metrics as OperatorMetrics
from certdepot.controller.ops.metrics import PerResource
from certdepot.repository.metrics import Metrics as RepositoryMetrics

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(?P<name>certdepot_[a-z_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \|")
NAME = re.compile(r"\bcertdepot_[a-z_]+")
# What a query may append to a family's name (prometheus_client's series of counters and
# histograms).
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def exported(metrics: object) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name as scraped -> (type, label names) of every metric an instance holds."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            kind = str(value._type)
            name = value._name + ("_total" if kind == "counter" else "")
            found[name] = (kind, tuple(value._labelnames))
        elif isinstance(value, PerResource):
            # A collector's families say their label names only through their samples.
            for family in value.collect():
                assert family.samples, f"{family.name}: seed a sample to see its labels"
                found[family.name] = (family.type,
                                      tuple(family.samples[0].labels))
    return found


def seeded(metrics: OperatorMetrics) -> OperatorMetrics:
    """The operator's per-resource collector with one object of each kind family, so its
    families have samples (and so label names) to compare with the docs."""
    for kind in ("CertificateDownload", "CertificateRepository"):
        metrics.per_resource.items[(kind, "ns", "name")] = ("True", 1.0, 2.0)
    return metrics


def documented(section: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    body = text.split("\n## Metrics\n", 1)[1].split(f"\n### {section}\n", 1)[1]
    body = body.split("\n### ", 1)[0]
    rows = {}
    for line in body.splitlines():
        if m := ROW.match(line):
            rows[m["name"]] = (m["type"], _labels(m["labels"]))
    return rows


def _labels(cell: str) -> tuple[str, ...]:
    """Label names of a cell such as "`kind` (A, B), `namespace`": the parts outside
    parentheses."""
    return tuple(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cell)))


@pytest.mark.parametrize(("section", "metrics"), [
    ("Operator", seeded(OperatorMetrics(CollectorRegistry()))),
    ("Repository", RepositoryMetrics()),
])
def test_docs_list_every_metric_with_its_type_and_labels(section: str, metrics: object) -> None:
    have = exported(metrics)
    assert have, "no metrics found on the instance"
    docs = documented(section)
    assert docs == have


def everything() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {**exported(seeded(OperatorMetrics(CollectorRegistry()))),
            **exported(RepositoryMetrics())}


def test_names_follow_prometheus_conventions() -> None:
    every = everything()
    for name, (kind, _) in every.items():
        assert name.startswith("certdepot_"), name
        assert (kind == "counter") == name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        # Points in time say so, in seconds: no gauge of a time without its unit.
        if re.search(r"not_after|expiration|renewal_timestamp", name):
            assert name.endswith("_timestamp_seconds"), name


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    every = everything()
    chart = ROOT / "charts" / "certdepot"
    used = set()
    for path in (chart / "dashboards" / "certdepot.json",
                 chart / "templates" / "monitoring" / "prometheusrule.yaml"):
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        used |= set(NAME.findall(text))
    assert used, "no metric found in the dashboard and rules"
    unknown = {n for n in used
               if n not in every and not (n.endswith(SUFFIXES) and
                                          n.rsplit("_", 1)[0] in every)}
    assert not unknown, unknown
