"""RFC 3339 time stamps, written and read the same way by every part of certdepot.

- ``rfc3339(moment, fraction=False)``: a datetime (naive means UTC) or a POSIX timestamp as
  UTC text with a ``Z`` suffix; whole seconds (Kubernetes' and most ACME servers' form)
  unless ``fraction`` keeps the microseconds.
- ``utc_seconds(moment)``: the same moment as an aware UTC datetime cut to whole seconds,
  for wire objects that carry whole-second times (``rfc3339(utc_seconds(x), fraction=True)``
  equals ``rfc3339(x)``).
- ``parse_rfc3339(text)``: the inverse, lenient about what servers send (``z``, an offset,
  Go's nanoseconds); always an aware datetime; ``ValueError`` otherwise.
"""

from __future__ import annotations

import datetime as dt


def rfc3339(moment: dt.datetime | float, *, fraction: bool = False) -> str:
    """``moment`` as RFC 3339 UTC with a ``Z`` suffix."""
    when = _utc(moment) if fraction else utc_seconds(moment)
    return when.isoformat().replace("+00:00", "Z")


def utc_seconds(moment: dt.datetime | float) -> dt.datetime:
    """``moment`` (naive means UTC, or a POSIX timestamp) in UTC, without its microseconds."""
    return _utc(moment).replace(microsecond=0)


def _utc(moment: dt.datetime | float) -> dt.datetime:
    if isinstance(moment, dt.datetime):
        when = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    else:
        when = dt.datetime.fromtimestamp(moment, dt.UTC)
    return when.astimezone(dt.UTC)


def parse_rfc3339(text: str) -> dt.datetime:
    """RFC 3339 text as an aware datetime; ``ValueError`` when it is not one."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python < 3.11 would choke on >6 fractional digits; Go servers send nanoseconds.
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
