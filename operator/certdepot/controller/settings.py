"""Operator-wide settings (from the command line), shared by every reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from certdepot.controller.errors import BackoffPolicy


@dataclass(frozen=True)
class Settings:
    # Where Secrets of cluster-scoped repositories (EAB key, account key) live.
    cluster_resource_namespace: str = "certdepot"
    # How often an up-to-date resource is looked at again even without events.
    recheck: timedelta = timedelta(minutes=10)
    # How often the repository's renewal information (ARI) is asked per certificate.
    renewal_info_interval: timedelta = timedelta(minutes=5)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
