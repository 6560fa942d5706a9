"""The client's own errors are typed (client_errors.py) and keep their cause."""

from __future__ import annotations

import httpx
import pytest

from certdepot.acme import client_errors as ce
from certdepot.acme.client import AcmeClientError, AcmeTimeout
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport import AcmeTransport
from certdepot.acme.transport_errors import TransportError


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("badResponse", ce.BadResponse, 502),
        ("unsupported", ce.Unsupported, 400),
        ("accountRequired", ce.AccountRequired, 400),
        ("keyMismatch", ce.KeyMismatch, 502),
        ("untrustedChain", ce.UntrustedChain, 502),
        ("timeout", ce.AcmeTimeout, 504),
    ],
)
def test_each_kind_is_its_own_class(kind: str, cls: type[AcmeClientError], status: int) -> None:
    error = AcmeClientError.make(kind, "https://repo.test/x: what went wrong")
    assert type(error) is cls and error.kind == kind and error.status == status
    assert error.short_type == ce.CLIENT_NS + kind  # the client's name, not an ACME URN
    assert isinstance(error, AcmeProblem) and not isinstance(error, TransportError)
    assert cls("detail").type == error.type


def test_poll_timeout_is_a_timeout_error() -> None:
    assert isinstance(AcmeTimeout("still pending"), TimeoutError)


def test_unknown_kind_keeps_its_name() -> None:
    error = AcmeClientError.make("somethingNew", "detail", 418)
    assert type(error) is AcmeClientError and error.kind == "somethingNew" and error.status == 418


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers,
                          request=httpx.Request("POST", "https://repo.test/acme/order/1"))


def test_non_json_answer_is_a_bad_response_chained_from_the_parse_error() -> None:
    with pytest.raises(ce.BadResponse) as exc:
        AcmeTransport._json(_response(200, b"<html>captive portal</html>"))
    assert "https://repo.test/acme/order/1" in exc.value.detail
    assert isinstance(exc.value.__cause__, ValueError)


def test_problem_retry_after_member_fills_in_for_a_missing_header() -> None:
    doc = b'{"type": "urn:ietf:params:acme:error:rateLimited", "retry-after": 5}'
    with pytest.raises(AcmeProblem) as exc:
        AcmeTransport._raise_for_problem(_response(429, doc))
    assert exc.value.short_type == "rateLimited" and exc.value.retry_after == 5.0
    with pytest.raises(AcmeProblem) as exc:
        AcmeTransport._raise_for_problem(_response(429, doc, {"Retry-After": "60"}))
    assert exc.value.retry_after == 60.0  # the header wins
