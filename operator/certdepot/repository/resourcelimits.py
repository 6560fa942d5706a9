"""Bounds on a RepositoryCertificate's or RepositoryTenant's spec, beyond what the file's
entries are checked for (resources.py applies them before the entry is built).

A resource is written by whoever may edit resources in the repository's namespace, not by
whoever edits the file, and it is applied by a watcher that must never stop over one bad
object. So every field a resource adds (``allowedTenants``, ``eab``) is checked for type
and shape here, sizes are bounded as the CRDs bound them (crds/04-*, crds/05-*, so the same
limits hold when the API server does not validate, e.g. for ``certdepot repository`` CLI
reads), durations must be positive, at most :data:`MAX_DURATION`, and ``renewBefore`` shorter
than ``lifetime`` (else every renewal pass renews again), and a wildcard must keep at least
two fixed labels to its right (``*``, ``*.com`` would claim a whole top-level domain).

Every failure is a ValueError naming the field (``spec.eab.secretName: ...``): the resource
is Invalid, the others still apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from certdepot.repository import tenants
from certdepot.repository.config import parse_duration

#: Longest lifetime, renewBefore or delegation maxLifetime a resource may state.
MAX_DURATION = timedelta(days=3650)
#: List sizes (the CRDs' maxItems).
MAX_DNS_NAMES = 100
MAX_GRANTS = 1000  # allowedTenants, download, revoke, issue
MAX_DELEGATIONS = 100
MAX_NAME_PATTERNS = 100
MAX_GENERATION = 2**63 - 1
# A Secret's name: a DNS-1123 subdomain (what the API server would refuse with a 422).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _list(spec: Mapping[str, Any], key: str, limit: int, where: str = "spec") -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}.{key}: must be a list")
    if len(value) > limit:
        raise ValueError(f"{where}.{key}: at most {limit} items (has {len(value)})")
    return value


def _duration(spec: Mapping[str, Any], key: str, where: str = "spec") -> timedelta | None:
    if spec.get(key) is None:
        return None
    try:
        value = parse_duration(spec[key])
    except (ValueError, OverflowError):
        raise ValueError(f"{where}.{key}: not a duration (use e.g. 90d, 12h)") from None
    if not timedelta(0) < value <= MAX_DURATION:
        raise ValueError(f"{where}.{key}: must be more than 0 and at most "
                         f"{MAX_DURATION.days}d")
    return value


def wildcard_ok(name: str) -> bool:
    """A name or pattern with a ``*`` keeps at least two fixed labels to its right."""
    labels = name.rstrip(".").split(".")
    starred = [i for i, label in enumerate(labels) if "*" in label]
    return not starred or len(labels) - 1 - starred[-1] >= 2


def _wildcards(values: list[Any], where: str) -> None:
    for i, value in enumerate(values):
        if isinstance(value, str) and not wildcard_ok(value):
            raise ValueError(f"{where}.{i}: {value[:80]!r}: a wildcard needs at least two "
                             "fixed labels to its right (e.g. *.example.com)")


def _strings(values: list[Any], where: str, check: Callable[[str], None]) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{where}.{i}: must be a string")
        try:
            check(value)
        except ValueError as exc:
            raise ValueError(f"{where}.{i}: {exc}") from None


def _spec(spec: Any) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise ValueError("spec: must be an object")
    return spec


def check_name(name: str) -> None:
    """A resource's name is the store's key: at most 200 characters (the API server allows
    253), which a longer one would only fail at its first write, in the renewal loop."""
    if len(name) > tenants.MAX_NAME:
        raise ValueError(f"metadata.name: at most {tenants.MAX_NAME} characters for the "
                         "repository")


def check_certificate(spec: Any) -> None:
    spec = _spec(spec)
    _wildcards(_list(spec, "dnsNames", MAX_DNS_NAMES), "spec.dnsNames")
    _strings(_list(spec, "allowedTenants", MAX_GRANTS), "spec.allowedTenants",
             tenants.check_name)
    lifetime, renew = _duration(spec, "lifetime"), _duration(spec, "renewBefore")
    if lifetime is not None and renew is not None and renew >= lifetime:
        raise ValueError("spec.renewBefore: must be shorter than spec.lifetime")


def check_tenant(spec: Any) -> None:
    spec = _spec(spec)
    for key in ("download", "revoke"):
        _list(spec, key, MAX_GRANTS)
    _wildcards(_list(spec, "issue", MAX_GRANTS), "spec.issue")
    for i, d in enumerate(_list(spec, "delegations", MAX_DELEGATIONS)):
        where = f"spec.delegations.{i}"
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: must be an object")
        _wildcards(_list(d, "namePatterns", MAX_NAME_PATTERNS, where), f"{where}.namePatterns")
        _duration(d, "maxLifetime", where)
    _eab(spec.get("eab"))


def _eab(eab: Any) -> None:
    if eab is None:
        return
    if not isinstance(eab, Mapping):
        raise ValueError("spec.eab: must be an object")
    name = eab.get("secretName")
    if name is not None and not (isinstance(name, str) and len(name) <= 253
                                 and _SUBDOMAIN.fullmatch(name)):
        raise ValueError("spec.eab.secretName: must be a Secret name (lower-case letters, "
                         "digits, '-' and '.', at most 253)")
    gen = eab.get("rotationGeneration")
    if gen is not None and not (isinstance(gen, int) and not isinstance(gen, bool)
                                and 0 <= gen <= MAX_GENERATION):
        raise ValueError("spec.eab.rotationGeneration: must be an integer from 0")
