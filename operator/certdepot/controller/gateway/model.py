"""What the operator asks of a repository, independent of how the ACME client spells it.

Reconcilers talk to :class:`RepositoryGateway`; :mod:`.acme_gateway` implements it with
:class:`certdepot.acme.client.AcmeClient`, unit tests with a fake. The values passed either
way (an :class:`Endpoint`, a :class:`RenewalWindow`, ...) are defined here, so the rest of
the gateway knows nothing of Kubernetes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509

from certdepot.acme.crypto import PrivateKey


@dataclass(frozen=True)
class RenewalWindow:
    """An ARI (RFC 9773) suggested window for the certificate currently in the Secret."""

    start: datetime
    end: datetime
    serial: str
    # The answer's Retry-After: when the repository wants to be asked again.
    retry_after: float | None = None
    # Set when the repository revoked this certificate (a rotation): the reason.
    revoked: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """How to reach a repository as one tenant."""

    directory_url: str
    account_key: PrivateKey
    ca_pem: bytes | None = None
    account_url: str | None = None

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback dump
        return f"Endpoint({self.directory_url!r}, account_url={self.account_url!r})"


@dataclass(frozen=True)
class ExternalAccount:
    key_id: str
    hmac_key_b64: str

    def __repr__(self) -> str:
        return f"ExternalAccount(key_id={self.key_id!r})"


@dataclass(frozen=True)
class AccountInfo:
    url: str
    directory: dict[str, Any] = field(default_factory=dict)
    delegations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Downloaded:
    chain_pem: str
    key: PrivateKey
    certificate_url: str = ""

    def __repr__(self) -> str:
        return f"Downloaded(certificate_url={self.certificate_url!r})"


@dataclass(frozen=True)
class Delegation:
    url: str
    csr_template: dict[str, Any]
    cname_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Issued:
    chain_pem: str
    certificate_url: str = ""
    order_url: str = ""


class RepositoryGateway(Protocol):
    async def register(
        self, endpoint: Endpoint, *, email: str | None, eab: ExternalAccount | None
    ) -> AccountInfo: ...

    async def download(
        self,
        endpoint: Endpoint,
        dns_names: Sequence[str],
        current_serial: str | None = None,
        resource: str | None = None,
    ) -> Downloaded:
        """The repository's certificate for ``dns_names``. ``current_serial`` is the one the
        caller already has: an implementation that shares results never answers with it
        from a download begun before the call (see sharing). ``resource`` (namespace/name)
        names the caller in the repository's inventory."""
        ...

    async def renewal_window(
        self, endpoint: Endpoint, cert: x509.Certificate
    ) -> RenewalWindow | None: ...

    async def delegations(self, endpoint: Endpoint) -> list[Delegation]: ...

    async def delegated_order(
        self,
        endpoint: Endpoint,
        *,
        delegation_url: str,
        dns_names: Sequence[str],
        csr_der: bytes,
        extra: dict[str, Any] | None = None,
    ) -> Issued: ...

    async def fetch_certificate(self, endpoint: Endpoint, url: str) -> str: ...
