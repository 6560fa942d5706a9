"""Go-style duration strings ("720h", "1h30m"), the format cert-manager users already write."""

from __future__ import annotations

import re
from datetime import timedelta

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
