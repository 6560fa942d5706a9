"""Prometheus metrics: readiness and expiry per resource, ACME traffic, reconcile errors."""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["kind", "namespace", "name"]
        self.ready = Gauge(
            "certdepot_resource_ready",
            "1 when the resource is Ready, else 0",
            labels,
            registry=self.registry,
        )
        self.not_after = Gauge(
            "certdepot_certificate_not_after_timestamp_seconds",
            "notAfter of the certificate in the Secret",
            labels,
            registry=self.registry,
        )
        self.renewal = Gauge(
            "certdepot_certificate_renewal_timestamp_seconds",
            "When the operator will fetch or renew next",
            labels,
            registry=self.registry,
        )
        self.acme_requests = Counter(
            "certdepot_acme_requests_total",
            "HTTP requests to repositories",
            ["method", "status"],
            registry=self.registry,
        )
        self.acme_duration = Histogram(
            "certdepot_acme_request_duration_seconds",
            "Duration of HTTP requests to repositories",
            ["method"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "certdepot_reconcile_errors_total",
            "Failed reconcile attempts",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.fetches = Counter(
            "certdepot_certificate_fetches_total",
            "Certificates written to Secrets",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "certdepot_operator_leader",
            "1 while this replica is the active one",
            registry=self.registry,
        )

    def observe(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        ready: bool,
        not_after: datetime | None = None,
        renewal: datetime | None = None,
    ) -> None:
        self.ready.labels(kind, namespace, name).set(1 if ready else 0)
        if not_after is not None:
            self.not_after.labels(kind, namespace, name).set(not_after.timestamp())
        if renewal is not None:
            self.renewal.labels(kind, namespace, name).set(renewal.timestamp())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        for gauge in (self.ready, self.not_after, self.renewal):
            with contextlib.suppress(KeyError):
                gauge.remove(kind, namespace, name)
