"""Which tenant may have which names, certificates and delegations. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable

from certdepot.repository.config import Config, ManagedCertificate, Tenant

_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # '*' stands for part of exactly one label: it never matches a dot.
    parts = [re.escape(p) for p in pattern.lower().rstrip(".").split("*")]
    return re.compile("^" + "[a-z0-9-]*".join(parts) + "$")


def name_matches(name: str, pattern: str) -> bool:
    """``cdn-*.example.com`` matches ``cdn-eu.example.com`` (one label, never more).

    A wildcard identifier (``*.example.com``) only matches a pattern that names it
    literally, so a pattern never grants more than it spells out.
    """
    n = name.lower().rstrip(".")
    p = pattern.lower().rstrip(".")
    if n == p:
        return True
    if "*" in n:
        return False
    if not _pattern_regex(p).match(n):
        return False
    return all(re.fullmatch(_LABEL, label) for label in n.split("."))


def may_issue(tenant: Tenant | None, name: str) -> bool:
    return tenant is not None and any(name_matches(name, p) for p in tenant.issue)


def managed_for_names(config: Config, names: Iterable[str]) -> ManagedCertificate | None:
    """The managed certificate whose DNS name set equals ``names`` exactly."""
    wanted = {n.lower().rstrip(".") for n in names}
    return next((c for c in config.certificates if set(c.dns_names) == wanted), None)


def may_download(tenant: Tenant | None, cert: ManagedCertificate) -> bool:
    return tenant is not None and cert.name in tenant.download
