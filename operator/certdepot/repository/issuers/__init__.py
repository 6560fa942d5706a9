"""Where the repository's certificates come from: an upstream ACME CA, an embedded CA, or
certificates the admin imported. Every issuer signs a client's CSR the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from cryptography import x509


@dataclass(frozen=True)
class IssueRequest:
    csr_der: bytes
    dns_names: list[str]
    lifetime: timedelta | None = None
    profile: str | None = None
    # ARI certID of the certificate this one replaces (RFC 9773 ``replaces``)
    replaces: str | None = None
    # Exact validity asked for (delegated orders with notBefore/notAfter); issuers that
    # can (local-ca) honour them to the second.
    not_before: datetime | None = None
    not_after: datetime | None = None


class IssuerError(Exception):
    """Issuance failed; the message is safe to log and to show to clients."""


class Issuer(Protocol):
    name: str
    can_issue: bool

    async def issue(self, request: IssueRequest) -> str:
        """Sign the CSR; returns the PEM chain, leaf first."""
        ...

    async def suggested_renewal(self, cert: x509.Certificate
                                ) -> tuple[float, float] | None:
        """The CA's suggested renewal window (epoch seconds) when it has one (ARI)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SignsNow(Protocol):
    """An issuer whose signing is a local computation, with nothing to wait for (the local
    CA: an ECDSA P-256 signature is tens of microseconds). A finalize signs in place, in
    the request's thread and transaction (``issuance.issue_for_order``), instead of
    handing the work to the event loop and back: those hops were ~12% of a plain
    issuance's CPU. An issuer that waits on a network (an upstream ACME CA) has no
    ``sign_now`` and keeps running in the background."""

    def sign_now(self, request: IssueRequest) -> str:
        """``Issuer.issue``, synchronously."""
        ...
