"""Certificate validity windows: the one check every lifetime and date passes through.

Every issuance the repository makes for a client (a delegated order's finalize, the first
and every later certificate of an RFC 8739 STAR order) gets its notBefore/notAfter from
:func:`window`, which checks what the client asked for against the delegation's
``maxLifetime``, the issuer's limits and the clock:

- no backdating: notBefore never earlier than now minus ``clockSkewAllowance``;
- no post-dating: notBefore never later than now plus that allowance (a certificate that
  only becomes valid later would outlive a policy change made in between);
- notAfter - notBefore never longer than the delegation's (and issuer's) maximum;
- a STAR certificate never ends after the order's ``end-date`` (RFC 8739 §3.1.1: the
  end-date is "the latest date of validity of the last certificate issued").

A request outside the limits is refused with ``malformed``: never clamped. The window is
computed again, with the current limits, at finalize and at every STAR renewal, so a
request that was fine at newOrder but no longer is (the admin lowered ``maxLifetime``, the
notBefore asked for has passed) is refused there too. Plain orders take no dates
(:func:`parse_request` refuses them) and get the issuer's own lifetime.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from certdepot.acme import fields
from certdepot.acme.messages import parse_time
from certdepot.acme.problems import AcmeProblem
from certdepot.repository.config import AcmeIssuer, Delegation
from certdepot.repository.issuers.local_ca import LocalCa
from certdepot.repository.state import Repo

# Clients round to whole seconds (RFC 3339 without fractions): one second of slack.
ROUNDING = 1.0


@dataclass(frozen=True)
class Requested:
    """What a newOrder asked for, as stored with the order (RFC 3339 text kept as sent)."""

    not_before: str | None = None
    not_after: str | None = None
    # RFC 8739 auto-renewal: nominal lifetime, left pre-dating, end-date, start-date
    lifetime: int | None = None
    predate: int = 0
    end_date: str | None = None
    start_date: str | None = None

    @property
    def star(self) -> bool:
        return self.end_date is not None


@dataclass(frozen=True)
class Limits:
    max_lifetime: float  # seconds, the delegation's and the issuer's smaller maximum
    latest: float | None  # the issuer cannot sign past this (its root's notAfter)
    skew: float  # seconds of clock skew tolerated around now

    def describe(self) -> str:
        return f"{int(self.max_lifetime)}s"


@dataclass(frozen=True)
class Window:
    not_before: float
    not_after: float

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def datetimes(self) -> tuple[dt.datetime, dt.datetime]:
        return (dt.datetime.fromtimestamp(self.not_before, dt.UTC),
                dt.datetime.fromtimestamp(self.not_after, dt.UTC))


def _seconds(value: Any, what: str, *, zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero else 1):
        kind = "a non-negative" if zero else "a positive"
        raise AcmeProblem("malformed", f"{what} must be {kind} number of seconds")
    return value


def _text_time(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    parse_time(value, key)  # malformed unless RFC 3339
    assert isinstance(value, str)
    return value


def parse_request(payload: dict[str, Any], *, delegated: bool) -> Requested:
    """The validity fields of a newOrder payload, checked for form (not yet for limits)."""
    ar = payload.get(fields.AUTO_RENEWAL)
    dates = [k for k in ("notBefore", "notAfter") if payload.get(k) is not None]
    if not delegated:
        for key in (*dates, *([fields.AUTO_RENEWAL] if ar is not None else [])):
            raise AcmeProblem("malformed", f"{key} is only supported for delegated orders")
        return Requested()
    if ar is None:
        return Requested(not_before=_text_time(payload, "notBefore"),
                         not_after=_text_time(payload, "notAfter"))
    if dates:
        # RFC 8739 §3.1.1: they MUST NOT be present in a STAR order; the server MUST
        # answer malformed.
        raise AcmeProblem("malformed", "notBefore/notAfter must not be sent with auto-renewal")
    if not isinstance(ar, dict):
        raise AcmeProblem("malformed", "auto-renewal must be an object")
    end = _text_time(ar, fields.END_DATE)
    if end is None:
        raise AcmeProblem("malformed", "auto-renewal needs an end-date")
    return Requested(lifetime=_seconds(ar.get(fields.LIFETIME), "auto-renewal lifetime"),
                     predate=_seconds(ar.get(fields.LIFETIME_ADJUST, 0),
                                      "auto-renewal lifetime-adjust", zero=True),
                     end_date=end, start_date=_text_time(ar, fields.START_DATE))


def limits(repo: Repo, issuer: str, d: Delegation) -> Limits:
    """The limits in force now for issuing with ``issuer`` under delegation ``d``."""
    cfg = repo.config.issuer(issuer)
    bound = d.max_lifetime.total_seconds()
    if isinstance(cfg, AcmeIssuer) and cfg.max_lifetime is not None:
        bound = min(bound, cfg.max_lifetime.total_seconds())
    signer = repo.issuers.get(issuer)
    latest = signer.root.not_valid_after_utc.timestamp() if isinstance(signer, LocalCa) \
        else None
    return Limits(max_lifetime=bound, latest=latest,
                  skew=repo.config.clock_skew_allowance.total_seconds())


def _ts(text: str | None, what: str) -> float | None:
    moment = parse_time(text, what)
    return moment.timestamp() if moment is not None else None


def window(req: Requested, lim: Limits, now: float) -> Window:
    """The notBefore/notAfter to issue with now, or ``malformed`` naming the limit broken."""
    if req.star:
        return _star_window(req, lim, now)
    nb = _ts(req.not_before, "notBefore")
    na = _ts(req.not_after, "notAfter")
    begin = now if nb is None else nb
    _check_start(begin, lim, now, "notBefore")
    end = begin + lim.max_lifetime if na is None else na
    return _checked(Window(begin, end), lim, "requested lifetime")


def _star_window(req: Requested, lim: Limits, now: float) -> Window:
    end_date = _ts(req.end_date, fields.END_DATE)
    start = _ts(req.start_date, fields.START_DATE)
    assert end_date is not None and req.lifetime is not None
    if start is not None and start > now + lim.skew:
        # The first certificate would have to wait for start-date; we issue at finalize.
        raise AcmeProblem("malformed", "auto-renewal start-date in the future is not "
                          "supported: omit it or send a time up to now")
    if end_date <= now:
        raise AcmeProblem("malformed", "auto-renewal end-date has passed")
    if req.predate > lim.skew:
        raise AcmeProblem("malformed", f"auto-renewal lifetime-adjust {req.predate}s exceeds "
                          f"the clock-skew allowance {int(lim.skew)}s (no backdating)")
    if req.lifetime + req.predate > lim.max_lifetime + ROUNDING:
        # Nominal, before the end-date cap: the order asks for this every renewal.
        raise AcmeProblem("malformed", f"auto-renewal lifetime {req.lifetime + req.predate}s "
                          f"exceeds the delegation's maximum {lim.describe()}")
    # RFC 8739 §3.1.1: the end-date is the latest validity of the last certificate.
    end = min(now + req.lifetime, end_date)
    return _checked(Window(now - req.predate, end), lim, "auto-renewal lifetime")


def _check_start(begin: float, lim: Limits, now: float, what: str) -> None:
    if begin < now - lim.skew:
        raise AcmeProblem("malformed", f"{what} is {int(now - begin)}s in the past; backdating "
                          f"beyond the clock-skew allowance {int(lim.skew)}s is refused")
    if begin > now + lim.skew:
        raise AcmeProblem("malformed", f"{what} is {int(begin - now)}s in the future; a "
                          "certificate must start at issuance (within the clock-skew "
                          f"allowance {int(lim.skew)}s)")


def _checked(w: Window, lim: Limits, what: str) -> Window:
    if w.not_after <= w.not_before:
        raise AcmeProblem("malformed", "notAfter must be after notBefore")
    if w.lifetime > lim.max_lifetime + ROUNDING:
        raise AcmeProblem("malformed", f"{what} {int(w.lifetime)}s exceeds the delegation's "
                          f"maximum {lim.describe()}")
    if lim.latest is not None and w.not_after > lim.latest:
        raise AcmeProblem("malformed", "notAfter is beyond the issuing CA's own validity")
    return w


def check_star_request(req: Requested, lim: Limits, now: float, *, min_lifetime: float,
                       max_duration: float) -> None:
    """newOrder-time checks of an auto-renewal request that do not depend on issuance."""
    assert req.lifetime is not None
    if req.lifetime < min_lifetime:
        raise AcmeProblem("malformed", f"auto-renewal lifetime below the minimum "
                          f"{int(min_lifetime)}s")
    end = _ts(req.end_date, fields.END_DATE)
    start = _ts(req.start_date, fields.START_DATE)
    assert end is not None
    if start is not None and start >= end:
        raise AcmeProblem("malformed", "auto-renewal start-date must be before end-date")
    if end - max(now, start or now) > max_duration:
        # RFC 8739 §3.6: the directory's max-duration bounds start-date to end-date.
        raise AcmeProblem("malformed", f"auto-renewal runs longer than max-duration "
                          f"{int(max_duration)}s")
    window(req, lim, now)
