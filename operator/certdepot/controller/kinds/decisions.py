"""Must we fetch again? Pure functions of spec, status, the Secret, ARI and the clock; and the
Go-style duration strings ("720h", "1h30m") specs give times in, the format cert-manager
users already write."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller.core.certinfo import CertInfo
from certdepot.controller.gateway.model import RenewalWindow
from certdepot.controller.kube.secrets import SecretState, conflict_message

DEFAULT_RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class Decision:
    fetch: bool
    reason: str  # CamelCase, goes into Events and the Ready condition
    message: str
    rewrite: bool = False  # write the Secret again from what it holds (spec metadata changed)
    conflict: bool = False
    renewal_time: datetime | None = None
    next_check: datetime | None = None


def effective_renew_before(
    renew_before: timedelta | None, not_before: datetime, not_after: datetime
) -> timedelta:
    """renewBefore, or a third of the lifetime when renewBefore would not fit in it."""
    lifetime = not_after - not_before
    wanted = renew_before if renew_before is not None else DEFAULT_RENEW_BEFORE
    if wanted >= lifetime or wanted <= timedelta(0):
        return lifetime / 3
    return wanted


def renewal_time(
    renew_before: timedelta | None, not_before: datetime, not_after: datetime
) -> datetime:
    return not_after - effective_renew_before(renew_before, not_before, not_after)


def decide(
    *,
    dns_names: Collection[str],
    renew_before: timedelta | None,
    state: SecretState,
    status: Mapping[str, Any],
    generation: int | None,
    adopt: bool,
    now: datetime,
    window: RenewalWindow | None = None,
    recheck: timedelta = timedelta(minutes=10),
    spec_needs_new_certificate: bool = False,
    renewal_requested: bool = False,
) -> Decision:
    """Decide one reconcile step for a Secret-producing resource.

    ``spec_needs_new_certificate`` is for specs whose change invalidates the certificate
    itself (a DelegatedCertificate's key or lifetime); a CertificateDownload only needs a new
    one when the names change, which this function sees from the certificate.
    ``renewal_requested``: someone asked for a fetch now (``kubectl certdepot renew``).
    """
    about_secret = _secret_decision(state, status, adopt, now, recheck)
    if about_secret is not None:
        return about_secret
    info = state.info
    assert info is not None  # _secret_decision fetches when there is none
    wanted = frozenset(n.lower() for n in dns_names)
    if info.dns_names != wanted:
        return Decision(
            True, "SpecChanged", "the certificate's DNS names differ from spec.dnsNames"
        )
    if spec_needs_new_certificate:
        return Decision(
            True, "SpecChanged", "the spec changed in a way that needs a new certificate"
        )
    if renewal_requested:
        return Decision(
            True, "RenewalRequested", "a renewal was requested (kubectl certdepot renew)"
        )
    rewrite = generation is not None and status.get("observedGeneration") != generation
    return _time_decision(
        info, renew_before, now=now, window=window, recheck=recheck, rewrite=rewrite
    )


def _secret_decision(
    state: SecretState,
    status: Mapping[str, Any],
    adopt: bool,
    now: datetime,
    recheck: timedelta,
) -> Decision | None:
    """A decision forced by the Secret itself (missing, someone else's, unusable, altered),
    or None when it holds the certificate we wrote."""
    if not state.exists:
        return Decision(True, "SecretMissing", "the Secret does not exist")
    if state.foreign and not adopt:
        return Decision(
            False,
            "SecretConflict",
            conflict_message(state.foreign),
            conflict=True,
            next_check=now + recheck,
        )
    if state.foreign:
        return Decision(True, "AdoptingSecret", f"{state.foreign}; adopting it as asked")
    if state.bundle is None or state.info is None:
        return Decision(
            True, "SecretInvalid", state.problem or "the Secret holds no usable certificate"
        )
    recorded = status.get("fingerprint")
    if recorded and recorded != state.info.fingerprint:
        return Decision(
            True, "SecretAltered", "the certificate in the Secret is not the one written"
        )
    return None


def _time_decision(
    info: CertInfo,
    renew_before: timedelta | None,
    *,
    now: datetime,
    window: RenewalWindow | None,
    recheck: timedelta,
    rewrite: bool,
) -> Decision:
    """Expired, expiring, a renewal window open (ARI, a revocation), or up to date."""
    if now >= info.not_after:
        return Decision(True, "Expired", "the certificate in the Secret has expired")
    renew_at = renewal_time(renew_before, info.not_before, info.not_after)
    if now >= renew_at:
        return Decision(
            True,
            "Expiring",
            "the certificate is within renewBefore of its expiry",
            renewal_time=renew_at,
        )
    if window is not None and window.serial == info.serial and window.start <= now:
        if window.revoked:
            return Decision(
                True,
                "Revoked",
                f"the repository revoked certificate {info.serial} ({window.revoked})",
                renewal_time=renew_at,
            )
        return Decision(
            True,
            "RenewalWindowOpen",
            "the repository's renewal information says a new certificate is due",
            renewal_time=renew_at,
        )
    next_check = min(renew_at, now + recheck)
    if window is not None and window.serial == info.serial and window.start > now:
        # The repository suggests an earlier start (ARI): that is when we will fetch.
        renew_at = min(renew_at, window.start)
        next_check = min(next_check, window.start)
    return Decision(
        False,
        "UpToDate",
        "the Secret holds a valid certificate",
        rewrite=rewrite,
        renewal_time=renew_at,
        next_check=next_check,
    )


# --- Go-style durations ---------------------------------------------------------------------

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration; raises ValueError (naming the text) when it is not one."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty duration")
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(stripped):
        raise ValueError(f"not a duration (want e.g. 720h or 1h30m): {text!r}")
    return timedelta(seconds=seconds)


def optional_duration(raw: object) -> timedelta | None:
    """:func:`parse_duration` for an optional spec field: None when it is unset or empty."""
    return parse_duration(str(raw)) if raw else None


def format_duration(value: timedelta) -> str:
    """A compact Go-style rendering (whole seconds), for messages."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if seconds or not out:
        out += f"{seconds}s"
    return out
