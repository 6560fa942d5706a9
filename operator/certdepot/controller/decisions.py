"""Must we fetch again? Pure functions of spec, status, the Secret, ARI and the clock."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certdepot.controller.gateway.model import RenewalWindow
from certdepot.controller.kube.secrets import SecretState

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
    if not state.exists:
        return Decision(True, "SecretMissing", "the Secret does not exist")
    if state.foreign and not adopt:
        return Decision(
            False,
            "SecretConflict",
            f"{state.foreign}; set adoptExistingSecret: true to take it over",
            conflict=True,
            next_check=now + recheck,
        )
    if state.foreign:
        return Decision(True, "AdoptingSecret", f"{state.foreign}; adopting it as asked")
    if state.bundle is None or state.info is None:
        return Decision(
            True, "SecretInvalid", state.problem or "the Secret holds no usable certificate"
        )
    info = state.info
    recorded = status.get("fingerprint")
    if recorded and recorded != info.fingerprint:
        return Decision(
            True, "SecretAltered", "the certificate in the Secret is not the one written"
        )
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
    rewrite = generation is not None and status.get("observedGeneration") != generation
    return Decision(
        False,
        "UpToDate",
        "the Secret holds a valid certificate",
        rewrite=rewrite,
        renewal_time=renew_at,
        next_check=next_check,
    )
