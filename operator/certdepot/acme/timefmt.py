"""RFC 3339 time stamps, written and read the same way by every part of certdepot.

- ``rfc3339(moment, fraction=False)``: a datetime (naive means UTC) or a POSIX timestamp as
  UTC text with a ``Z`` suffix; whole seconds (Kubernetes' and most ACME servers' form)
  unless ``fraction`` keeps the microseconds.
- ``parse_rfc3339(text)``: the inverse, lenient about what servers send (``z``, an offset,
  Go's nanoseconds); always an aware datetime; ``ValueError`` otherwise.
"""

from __future__ import annotations

import datetime as dt


def rfc3339(moment: dt.datetime | float, *, fraction: bool = False) -> str:
    """``moment`` as RFC 3339 UTC with a ``Z`` suffix."""
    if isinstance(moment, dt.datetime):
        when = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    else:
        when = dt.datetime.fromtimestamp(moment, dt.UTC)
    when = when.astimezone(dt.UTC)
    if not fraction:
        when = when.replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


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
