"""Which tenant may have which names, certificates and delegations. Pure functions."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from certdepot.acme import dnsname
from certdepot.repository.config import AcmeIssuer, Config, ManagedCertificate, Tenant


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # '*' stands for part of exactly one label: it never matches a dot.
    parts = [re.escape(p) for p in pattern.split("*")]
    return re.compile("[a-z0-9-]*".join(parts))


def name_matches(name: str, pattern: str) -> bool:
    """``cdn-*.example.com`` matches ``cdn-eu.example.com`` (one label, never more).

    Both sides are first put in canonical form (dnsname); a name that is not a valid DNS
    name matches nothing: the literal text ``cdn-*.example.com`` is not a name, so it never
    matches the pattern that spells it. A wildcard identifier (``*.example.com``) only
    matches a pattern that names it literally, so a pattern never grants more than it
    spells out.
    """
    try:
        n = dnsname.normalize(name)
        p = dnsname.normalize_pattern(pattern)
    except dnsname.InvalidName:
        return False
    if dnsname.is_wildcard(n):
        return n == p
    return _pattern_regex(p).fullmatch(n) is not None


def advertised_profiles(config: Config) -> list[str]:
    """The profiles the directory offers (draft-ietf-acme-profiles): the upstream ones
    named in the configuration; the embedded CA has none."""
    return sorted({i.profile for i in config.issuers if isinstance(i, AcmeIssuer) and i.profile}
                  | {c.profile for c in config.certificates if c.profile})


def profile_problem(config: Config, profile: object, issuer: str | None) -> str | None:
    """Why ``profile`` cannot be honoured for an order issued by ``issuer``, or None.
    (None for an absent profile.)"""
    if profile is None:
        return None
    if profile not in advertised_profiles(config):
        return f"profile {str(profile)[:64]!r} is not offered by this server"
    if issuer is not None and not isinstance(config.issuer(issuer), AcmeIssuer):
        return f"issuer {issuer!r} has no profiles"
    return None


def may_issue(tenant: Tenant | None, name: str) -> bool:
    return tenant is not None and any(name_matches(name, p) for p in tenant.issue)


def managed_for_names(config: Config, names: Iterable[str]) -> ManagedCertificate | None:
    """The managed certificate whose DNS name set equals ``names`` exactly."""
    try:
        wanted = {dnsname.normalize(n) for n in names}
    except dnsname.InvalidName:
        return None
    return next((c for c in config.certificates if set(c.dns_names) == wanted), None)


def may_download(tenant: Tenant | None, cert: ManagedCertificate) -> bool:
    return tenant is not None and cert.name in tenant.download
