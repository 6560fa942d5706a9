"""Certificates the admin imported (``certdepot repository import``): kept, served and
warned about before expiry, never renewed."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certdepot.acme import crypto
from certdepot.repository.config import ImportedIssuer
from certdepot.repository.issuers import IssueRequest, IssuerError


class Imported:
    can_issue = False

    def __init__(self, cfg: ImportedIssuer) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.warn_before = cfg.warn_before

    async def issue(self, request: IssueRequest) -> str:
        raise IssuerError(f"issuer {self.name} only holds imported certificates; "
                          "import a new one with `certdepot repository import`")

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        return None

    async def close(self) -> None:
        return None


def validate_import(cert_pem: bytes, key_pem: bytes, chain_pem: bytes | None
                    ) -> tuple[str, crypto.PrivateKey, x509.Certificate]:
    """Check the key matches the leaf; return (full chain PEM, key, leaf).

    Error messages never contain key material."""
    try:
        certs = crypto.parse_pem_chain(cert_pem)
    except ValueError as exc:
        raise IssuerError(f"certificate: {exc}") from None
    try:
        key = crypto.load_private_key(key_pem)
    except ValueError as exc:
        raise IssuerError(f"key: {exc}") from None
    leaf = certs[0]
    if not crypto.public_key_matches(key, leaf):
        raise IssuerError("the private key does not match the certificate")
    extra: list[x509.Certificate] = []
    if chain_pem:
        try:
            extra = crypto.parse_pem_chain(chain_pem)
        except ValueError as exc:
            raise IssuerError(f"chain: {exc}") from None
    full = "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                   for c in [*certs, *extra])
    return full, key, leaf
