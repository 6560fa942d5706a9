"""What the ACME client raises about an answer that arrived but is not what it needs.

Three families, told apart by type:

- ``AcmeProblem``: the server sent a problem document (RFC 8555 §6.7); ``type`` is the
  server's URN.
- ``transport_errors.TransportError``: no HTTP answer (timeout, TLS, connection, protocol).
- ``AcmeClientError`` (here): an answer arrived and the client rejects it, or the client
  cannot ask. Each kind is its own subclass, so callers decide with ``isinstance``:
  ``BadResponse`` (not what RFC 8555 promises: no JSON, no Location, no PEM...),
  ``Unsupported`` (the server does not offer what was asked: no revokeCert, no download),
  ``AccountRequired`` (a call that needs an account before ``new_account``),
  ``KeyMismatch`` / ``UntrustedChain`` (a downloaded key or chain failed the client's
  check), ``AcmeTimeout`` (polling gave up; also a ``TimeoutError``).

``AcmeClientError`` stays an ``AcmeProblem`` (type ``urn:certdepot:error:<kind>``) so code
that reports problems uniformly keeps working; that URN is the client's own name for the
kind, never sent on the wire and never the server's. Every one is raised ``from`` its cause
when there is one.
"""

from __future__ import annotations

from typing import ClassVar

from certdepot.acme.problems import AcmeProblem

#: Namespace of the client's own error kinds (not a server's problem type).
CLIENT_NS = "urn:certdepot:error:"


class AcmeClientError(AcmeProblem):
    """The client could not complete an exchange (the detail names the URL)."""

    KIND: ClassVar[str] = "badResponse"
    STATUS: ClassVar[int] = 502

    def __init__(self, detail: str = "", *, type: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(type=type or CLIENT_NS + self.KIND, detail=detail,
                         status=status if status is not None else self.STATUS)

    @property
    def kind(self) -> str:
        """The kind's short name (``badResponse``, ``unsupported``...)."""
        return self.type.removeprefix(CLIENT_NS)

    @classmethod
    def make(cls, kind: str, detail: str, status: int | None = None) -> AcmeClientError:
        """The subclass for ``kind`` (an unknown kind: the base class with that name)."""
        sub = _BY_KIND.get(kind)
        if sub is not None:
            return sub(detail, status=status)
        return AcmeClientError(detail, type=CLIENT_NS + kind, status=status)


class BadResponse(AcmeClientError):
    """The server answered, but not as RFC 8555 says it must."""

    KIND = "badResponse"


class Unsupported(AcmeClientError):
    """The server does not offer the resource or extension asked for."""

    KIND = "unsupported"
    STATUS = 400


class AccountRequired(AcmeClientError):
    """The call needs an account URL; call ``new_account`` (or pass ``account_url``) first."""

    KIND = "accountRequired"
    STATUS = 400


class KeyMismatch(AcmeClientError):
    """A downloaded private key does not belong to the downloaded certificate."""

    KIND = "keyMismatch"


class UntrustedChain(AcmeClientError):
    """A downloaded chain does not lead to the pinned root."""

    KIND = "untrustedChain"


class AcmeTimeout(AcmeClientError, TimeoutError):
    """A poll did not reach the wanted state in time."""

    KIND = "timeout"
    STATUS = 504


_BY_KIND: dict[str, type[AcmeClientError]] = {
    c.KIND: c for c in (BadResponse, Unsupported, AccountRequired, KeyMismatch,
                        UntrustedChain, AcmeTimeout)
}
