"""Transport failures: the client's typed errors, chained from httpx, and how the operator
classifies them (by type, with the same reasons and messages as before)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient, transport_error
from certdepot.acme.transport_errors import (
    ConnectError,
    ProtocolError,
    Timeout,
    TlsError,
    TransportError,
)
from certdepot.controller.core.errors import BackoffPolicy, classify
from certdepot.testenv.pki import TestCA

URL = "https://repo.example.test/dir"


def _wrapped_ssl_error() -> httpx.ConnectError:
    # How httpx reports a failed handshake: its ConnectError, the ssl error as the cause.
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("handshake failed") from inner
    except httpx.ConnectError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (httpx.ConnectError("All connection attempts failed"), ConnectError),
        (httpx.ReadError("connection reset"), ConnectError),
        (httpx.RemoteProtocolError("Server disconnected"), ProtocolError),
        (httpx.LocalProtocolError("illegal header"), ProtocolError),
        (_wrapped_ssl_error(), TlsError),
    ],
)
def test_httpx_failures_map_to_one_type_each(
    cause: httpx.TransportError, expected: type[TransportError]
) -> None:
    error = transport_error("GET", URL, cause)
    assert type(error) is expected
    assert (error.method, error.url) == ("GET", URL)
    assert URL in str(error) and type(cause).__name__ in str(error)


def test_timeout_is_also_a_builtin_timeout() -> None:
    assert issubclass(Timeout, TimeoutError) and issubclass(Timeout, TransportError)


async def test_untrusted_server_certificate_is_a_tls_error_chained_from_httpx(
    tmp_path: Path,
) -> None:
    ca = TestCA.create(tmp_path, "untrusted-ca")
    cert, key = ca.issue(tmp_path, "server", "127.0.0.1", ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/dir"
    try:
        # verify=True: the system trust store, which does not hold the test CA.
        async with AcmeClient(url, crypto.generate_private_key(), timeout=5) as acme:
            with pytest.raises(TlsError, match=url) as exc:
                await acme.directory()
    finally:
        server.close()
    assert isinstance(exc.value.__cause__, httpx.ConnectError)
    outcome = classify(exc.value, 1, BackoffPolicy(5, 300))
    assert outcome.reason == "TLSError" and "caBundle" in outcome.message


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TlsError("GET", URL, f"GET {URL} failed: ConnectError: bad cert"), "TLSError"),
        (Timeout("GET", URL, f"GET {URL} timed out after 5s"), "Timeout"),
        (ConnectError("GET", URL, f"GET {URL} failed: ConnectError: refused"), "ConnectionError"),
        (ProtocolError("GET", URL, f"GET {URL} failed: RemoteProtocolError: x"), "ConnectionError"),
    ],
)
def test_classifier_keeps_reasons_and_messages(error: TransportError, reason: str) -> None:
    outcome = classify(error, 2, BackoffPolicy(5, 300))
    assert outcome.reason == reason and not outcome.permanent and outcome.retry_after == 10
    assert error.message in outcome.message
