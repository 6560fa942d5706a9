"""Prometheus metrics: readiness and expiry per resource, ACME traffic, reconcile errors.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_timestamp_seconds``
for points in time) and mirror cert-manager's where the meaning is the same, so a
dashboard or alert written for ``certmanager_certificate_*`` carries over by swapping the
prefix. docs/operations.md ("Metrics") lists every metric and the names they replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# The kinds whose readiness is a certificate's (cert-manager's Certificate); the others
# (CertificateRepository, ClusterCertificateRepository) are the issuers of this world.
CERTIFICATE_KINDS = ("CertificateDownload", "DelegatedCertificate")
# cert-manager's ready_status shape: one series per condition value, 1 on the current one.
CONDITIONS = ("True", "False", "Unknown")
LABELS = ["kind", "namespace", "name"]


Key = tuple[str, str, str]  # kind, namespace, name


class PerResource(Collector):
    """The per-resource series (readiness, expiry, next renewal), kept as one small tuple
    per resource and turned into metric families at scrape time.

    prometheus_client's labelled Gauges kept five child objects per resource (three
    condition series, expiry, renewal), each with its own value and lock: 3.8 KB per
    CertificateDownload, a tenth of the operator's memory per object at N=10,000. The
    exposition is the same."""

    def __init__(self) -> None:
        # (kind, namespace, name) -> (condition, notAfter, renewal); None: not known yet.
        self.items: dict[Key, tuple[str, float | None, float | None]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cert_ready = GaugeMetricFamily(
            "certdepot_certificate_ready_status",
            "The Ready condition of a CertificateDownload or DelegatedCertificate "
            "(1 on the series of its current status)",
            labels=[*LABELS, "condition"],
        )
        repo_ready = GaugeMetricFamily(
            "certdepot_certificaterepository_ready_status",
            "The Ready condition (ACME account registered) of a CertificateRepository or "
            "ClusterCertificateRepository (1 on the series of its current status)",
            labels=[*LABELS, "condition"],
        )
        expiration = GaugeMetricFamily(
            "certdepot_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate in the Secret, in seconds since the epoch",
            labels=LABELS,
        )
        renewal = GaugeMetricFamily(
            "certdepot_certificate_renewal_timestamp_seconds",
            "When the operator will fetch or renew next, in seconds since the epoch",
            labels=LABELS,
        )
        # A copy taken at once: the scrape may run beside the event loop's updates.
        for key, (current, not_after, renew_at) in list(self.items.items()):
            ready = cert_ready if key[0] in CERTIFICATE_KINDS else repo_ready
            for condition in CONDITIONS:
                ready.add_metric([*key, condition], 1.0 if condition == current else 0.0)
            if not_after is not None:
                expiration.add_metric(list(key), not_after)
            if renew_at is not None:
                renewal.add_metric(list(key), renew_at)
        yield from (cert_ready, repo_ready, expiration, renewal)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.per_resource = PerResource()
        self.registry.register(self.per_resource)
        self.acme_requests = Counter(
            "certdepot_acme_client_requests_total",
            "HTTP requests to repositories",
            ["method", "status"],
            registry=self.registry,
        )
        self.acme_duration = Histogram(
            "certdepot_acme_client_request_duration_seconds",
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
        ready: bool | None,
        not_after: datetime | None = None,
        renewal: datetime | None = None,
    ) -> None:
        """Record a resource's readiness (None: not reconciled yet, Unknown) and, once it
        holds one, its certificate's expiry and next renewal."""
        key = (kind, namespace, name)
        _, was_not_after, was_renewal = self.per_resource.items.get(key, ("", None, None))
        self.per_resource.items[key] = (
            "Unknown" if ready is None else str(ready),
            not_after.timestamp() if not_after is not None else was_not_after,
            renewal.timestamp() if renewal is not None else was_renewal,
        )

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.per_resource.items.pop((kind, namespace, name), None)
