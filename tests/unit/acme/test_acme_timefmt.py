"""The one RFC 3339 helper: the forms each caller relied on before it was shared."""

from __future__ import annotations

import datetime as dt

import pytest

from certdepot.acme.timefmt import parse_rfc3339, rfc3339


def test_seconds_precision_by_default_from_datetime_and_timestamp() -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert rfc3339(moment) == "2026-03-04T03:06:07Z"
    assert rfc3339(moment.timestamp()) == "2026-03-04T03:06:07Z"
    assert rfc3339(moment, fraction=True) == "2026-03-04T03:06:07.890000Z"


def test_naive_datetime_is_taken_as_utc() -> None:
    assert rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


def test_parse_accepts_what_servers_send() -> None:
    expected = dt.datetime(2026, 3, 4, 3, 6, 7, 123456, tzinfo=dt.UTC)
    assert parse_rfc3339("2026-03-04T03:06:07.123456789Z") == expected
    assert parse_rfc3339("2026-03-04T05:06:07.123456+02:00") == expected
    assert parse_rfc3339("2026-03-04T03:06:07z").tzinfo is not None
    assert parse_rfc3339(rfc3339(expected, fraction=True)) == expected


def test_parse_rejects_non_times() -> None:
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")
