"""Operator-wide settings (from the command line), shared by every reconciler, and the clock.

Time is a dependency (:data:`Clock`), so renewal decisions can be tested at any instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from certdepot.controller.core.errors import BackoffPolicy

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real time, always timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settings:
    # Where Secrets of cluster-scoped repositories (EAB key, account key) live.
    cluster_resource_namespace: str = "certdepot"
    # How often an up-to-date resource is looked at again even without events.
    recheck: timedelta = timedelta(minutes=10)
    # How often the repository's renewal information (ARI) is asked per certificate.
    renewal_info_interval: timedelta = timedelta(minutes=5)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
