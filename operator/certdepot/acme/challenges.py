"""Challenge responses (RFC 8555 §8, RFC 8737): what the client publishes, what a validator expects.

- ``key_authorization(token, account_jwk) -> str``: ``token || "." || base64url(thumbprint)``.
- ``http01_path(token)`` and ``http01_body(token, account_jwk)``: the resource
  ``/.well-known/acme-challenge/<token>`` and its exact body.
- ``dns01_name(domain)`` (``_acme-challenge.<domain>``, wildcard label stripped) and
  ``dns01_txt_value(token, account_jwk)``: base64url(SHA-256(key authorization)).
- ``tlsalpn01_extension_value(token, account_jwk) -> bytes``: DER of the critical
  ``acmeIdentifier`` extension (OID 1.3.6.1.5.5.7.1.31), an OCTET STRING of the SHA-256 digest;
  ``ACME_TLS_ALPN_PROTOCOL`` = ``acme-tls/1``; ``tlsalpn01_extension(token, jwk)`` /
  ``tlsalpn01_extension_from_key_authorization(keyauth)`` give the extension object.
- ``valid_token(token)``: tokens are base64url with at least 128 bits of entropy (§8.1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from certdepot.acme.jws import b64encode, thumbprint_b64

HTTP01 = "http-01"
DNS01 = "dns-01"
TLSALPN01 = "tls-alpn-01"
ACME_TLS_ALPN_PROTOCOL = "acme-tls/1"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
HTTP01_PREFIX = "/.well-known/acme-challenge/"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,}$")


def valid_token(token: str) -> bool:
    """A base64url token of at least 22 characters (128 bits)."""
    return bool(_TOKEN.match(token))


def key_authorization(token: str, account_jwk: Mapping[str, Any]) -> str:
    """The key authorization for ``token`` under the account key ``account_jwk``."""
    return f"{token}.{thumbprint_b64(account_jwk)}"


def http01_path(token: str) -> str:
    """The path the validator fetches for http-01."""
    return HTTP01_PREFIX + token


def http01_body(token: str, account_jwk: Mapping[str, Any]) -> str:
    """The exact http-01 response body (the key authorization, no newline)."""
    return key_authorization(token, account_jwk)


def dns01_name(domain: str) -> str:
    """The TXT record name for dns-01 (``*.example.com`` validates at ``example.com``)."""
    base = domain.removeprefix("*.").rstrip(".")
    return f"_acme-challenge.{base}"


def dns01_txt_value(token: str, account_jwk: Mapping[str, Any]) -> str:
    """The dns-01 TXT record value."""
    digest = hashlib.sha256(key_authorization(token, account_jwk).encode()).digest()
    return b64encode(digest)


def dns01_txt_from_key_authorization(key_authorization_value: str) -> str:
    """The dns-01 TXT value computed from an already-built key authorization."""
    return b64encode(hashlib.sha256(key_authorization_value.encode()).digest())


def tlsalpn01_digest(token: str, account_jwk: Mapping[str, Any]) -> bytes:
    """SHA-256 of the key authorization, as carried in the acmeIdentifier extension."""
    return hashlib.sha256(key_authorization(token, account_jwk).encode()).digest()


def tlsalpn01_extension_value(token: str, account_jwk: Mapping[str, Any]) -> bytes:
    """DER value of the acmeIdentifier extension: OCTET STRING (32 bytes)."""
    digest = tlsalpn01_digest(token, account_jwk)
    return bytes([0x04, len(digest)]) + digest


def tlsalpn01_extension_from_key_authorization(
    key_authorization_value: str,
) -> x509.UnrecognizedExtension:
    """The acmeIdentifier extension from an already-built key authorization."""
    digest = hashlib.sha256(key_authorization_value.encode()).digest()
    return x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, bytes([0x04, len(digest)]) + digest)


def tlsalpn01_extension(token: str, account_jwk: Mapping[str, Any]) -> x509.UnrecognizedExtension:
    """The acmeIdentifier extension object to add (critical) to a self-signed certificate."""
    return x509.UnrecognizedExtension(
        ACME_IDENTIFIER_OID, tlsalpn01_extension_value(token, account_jwk)
    )
