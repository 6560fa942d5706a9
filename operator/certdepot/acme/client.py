"""An async ACME client (RFC 8555, EAB, RFC 9773 ARI, profiles, certdepot's extensions).

::

    async with AcmeClient(directory_url, account_key, verify=ca_path) as acme:
        await acme.new_account(contact=["mailto:ops@example.test"], eab=(kid, hmac_b64))
        order = await acme.new_order([Identifier.dns("www.example.test")], profile="shortlived")
        order = await acme.solve(order, solver)            # or answer challenges yourself
        order = await acme.finalize(order, csr_der)
        chains = await acme.fetch_certificate(order.certificate)

``AcmeClient`` is assembled from three layers, each its own module:

- ``transport.AcmeTransport``: one connection pool (aiohttp, ``aiohttp_transport``; pass
  ``transport=httpx.ASGITransport(app)`` to talk to an in-process server), timeouts, the
  nonce pool and ``badNonce`` retry, signed POSTs, problem documents, ``Link`` and
  ``Retry-After`` parsing;
- ``rfc8555.Rfc8555Client``: accounts, orders, authorizations, challenges, finalize,
  certificates, revocation, renewalInfo, polling;
- ``extensions.CertdepotClient``: certificate download with the wrapped private key
  (docs/protocol.md §4) and RFC 9115 delegation / RFC 8739 STAR orders (§5).

Errors, by type: ``AcmeProblem`` when the server sent a problem document;
``transport_errors.TransportError`` (``Timeout``, ``TlsError``, ``ConnectError``,
``ProtocolError``) when no HTTP answer arrived, chained from the httpx exception;
``client_errors.AcmeClientError`` subclasses (``BadResponse``, ``Unsupported``,
``AccountRequired``, ``KeyMismatch``, ``UntrustedChain``, ``AcmeTimeout``) when an answer
arrived but the client rejects it. A 500 without a problem document is ``serverInternal``.

This module keeps the names callers import (``from certdepot.acme.client import ...``).
"""

from __future__ import annotations

from certdepot.acme.client_errors import (
    CLIENT_NS,
    AccountRequired,
    AcmeClientError,
    AcmeTimeout,
    BadResponse,
    KeyMismatch,
    Unsupported,
    UntrustedChain,
)
from certdepot.acme.extensions import CertdepotClient
from certdepot.acme.rfc8555 import PEM_CHAIN, CertificateChains, ChallengeSolver
from certdepot.acme.transport import (
    JOSE_JSON,
    USER_AGENT,
    Verify,
    parse_links,
    retry_after_seconds,
    transport_error,
)

__all__ = [
    "CLIENT_NS",
    "JOSE_JSON",
    "PEM_CHAIN",
    "USER_AGENT",
    "AccountRequired",
    "AcmeClient",
    "AcmeClientError",
    "AcmeTimeout",
    "BadResponse",
    "CertificateChains",
    "ChallengeSolver",
    "KeyMismatch",
    "Unsupported",
    "UntrustedChain",
    "Verify",
    "parse_links",
    "retry_after_seconds",
    "transport_error",
]


class AcmeClient(CertdepotClient):
    """One ACME account's view of one server, with certdepot's extensions. Use as ``async with``.

    Constructor: ``AcmeClient(directory_url, key, *, account_url=None, transport=None,
    verify=True, timeout=15.0, poll_interval=1.0, max_poll_interval=10.0, poll_timeout=120.0,
    user_agent=USER_AGENT, bad_nonce_retries=1)`` (see ``transport.AcmeTransport``).
    """
