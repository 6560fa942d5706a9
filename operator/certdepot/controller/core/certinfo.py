"""What the operator reads from a TLS Secret and how its specs name keys.

The cryptography itself (parsing, keys, CSRs, PEM) is ``certdepot.acme.crypto``, shared with
the repository; this module only holds the Secret-side views built on it: the bundle a Secret
carries, the leaf facts status reports, and the mapping from a spec's ``privateKey``
(``algorithm``/``size``) to a key kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.crypto import PrivateKey

_DEFAULT_SIZES = {"RSA": 2048, "ECDSA": 256}


@dataclass(frozen=True)
class CertInfo:
    """What status reports about a leaf certificate."""

    not_before: datetime
    not_after: datetime
    serial: str
    fingerprint: str
    dns_names: frozenset[str]


@dataclass(frozen=True)
class Bundle:
    """A Secret's TLS content: leaf + intermediates, the root when known, the key."""

    chain: list[x509.Certificate]
    root: x509.Certificate | None
    key: PrivateKey


def cert_info(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=crypto.serial_hex(cert),
        fingerprint=crypto.fingerprint_sha256(cert),
        dns_names=frozenset(crypto.certificate_dns_names(cert)),
    )


def key_kind(algorithm: str = "ECDSA", size: int | None = None) -> str:
    """The ``crypto.KEY_KINDS`` name for a spec's ``privateKey`` (``ECDSA``/384 -> ``ec-p384``)."""
    if algorithm == "Ed25519":
        return "ed25519"
    if algorithm == "RSA":
        return f"rsa-{size or _DEFAULT_SIZES['RSA']}"
    if algorithm == "ECDSA":
        kind = f"ec-p{size or _DEFAULT_SIZES['ECDSA']}"
        if kind not in crypto.KEY_KINDS:
            raise ValueError(f"unsupported ECDSA size {size}")
        return kind
    raise ValueError(f"unsupported key algorithm {algorithm!r}")


def key_fits(key: PrivateKey, algorithm: str, size: int | None) -> bool:
    """Does an existing key match the spec (for rotationPolicy: Never)?"""
    try:
        return crypto.key_type_name(key) == key_kind(algorithm, size)
    except ValueError:
        return False
