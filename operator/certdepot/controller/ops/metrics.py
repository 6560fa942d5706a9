"""Prometheus metrics: readiness and expiry per resource, ACME traffic, reconcile errors.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_timestamp_seconds``
for points in time) and mirror cert-manager's where the meaning is the same, so a
dashboard or alert written for ``certmanager_certificate_*`` carries over by swapping the
prefix. docs/operations.md ("Metrics") lists every metric and the names they replaced.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The kinds whose readiness is a certificate's (cert-manager's Certificate); the others
# (CertificateRepository, ClusterCertificateRepository) are the issuers of this world.
CERTIFICATE_KINDS = ("CertificateDownload", "DelegatedCertificate")
# cert-manager's ready_status shape: one series per condition value, 1 on the current one.
CONDITIONS = ("True", "False", "Unknown")
LABELS = ["kind", "namespace", "name"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.certificate_ready = Gauge(
            "certdepot_certificate_ready_status",
            "The Ready condition of a CertificateDownload or DelegatedCertificate "
            "(1 on the series of its current status)",
            [*LABELS, "condition"],
            registry=self.registry,
        )
        self.repository_ready = Gauge(
            "certdepot_certificaterepository_ready_status",
            "The Ready condition (ACME account registered) of a CertificateRepository or "
            "ClusterCertificateRepository (1 on the series of its current status)",
            [*LABELS, "condition"],
            registry=self.registry,
        )
        self.expiration = Gauge(
            "certdepot_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate in the Secret, in seconds since the epoch",
            LABELS,
            registry=self.registry,
        )
        self.renewal = Gauge(
            "certdepot_certificate_renewal_timestamp_seconds",
            "When the operator will fetch or renew next, in seconds since the epoch",
            LABELS,
            registry=self.registry,
        )
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

    def _ready_gauge(self, kind: str) -> Gauge:
        return self.certificate_ready if kind in CERTIFICATE_KINDS else self.repository_ready

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
        current = "Unknown" if ready is None else str(ready)
        gauge = self._ready_gauge(kind)
        for condition in CONDITIONS:
            gauge.labels(kind, namespace, name, condition).set(1 if condition == current else 0)
        if not_after is not None:
            self.expiration.labels(kind, namespace, name).set(not_after.timestamp())
        if renewal is not None:
            self.renewal.labels(kind, namespace, name).set(renewal.timestamp())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        gauge = self._ready_gauge(kind)
        for condition in CONDITIONS:
            with contextlib.suppress(KeyError):
                gauge.remove(kind, namespace, name, condition)
        for per_resource in (self.expiration, self.renewal):
            with contextlib.suppress(KeyError):
                per_resource.remove(kind, namespace, name)
