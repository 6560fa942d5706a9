"""Why an exchange with an ACME server failed below ACME: the typed transport errors.

The client raises these (chained from the HTTP library's exception) when no HTTP answer
arrived; a problem document the server sent stays an ``AcmeProblem``. Callers decide on the
type (retry a timeout, tell the user to check the CA bundle on a TLS error...), never on text.

- ``TransportError``: the base; ``method`` and ``url`` name the request.
- ``Timeout`` (also a ``TimeoutError``): no answer in time.
- ``TlsError``: the TLS handshake failed (most often: the server's certificate does not verify).
- ``ConnectError``: no connection, or it broke (refused, reset, name not resolved).
- ``ProtocolError``: the peer did not speak HTTP as it should (hung up mid-exchange, garbage).
"""

from __future__ import annotations


class TransportError(Exception):
    """No usable HTTP answer to ``method url``; the message names both."""

    def __init__(self, method: str, url: str, message: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.message = message


class Timeout(TransportError, TimeoutError):
    """The server did not answer in time."""


class TlsError(TransportError):
    """The TLS handshake with the server failed."""


class ConnectError(TransportError):
    """The connection could not be made or broke."""


class ProtocolError(TransportError):
    """The server broke HTTP (closed the connection mid-exchange, sent what is not HTTP)."""
