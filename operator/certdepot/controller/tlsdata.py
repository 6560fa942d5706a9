"""Certificates and keys as the Secret holds them: parse, check, fingerprint, generate, encode.

Pure functions over ``cryptography`` objects. Nothing here formats a private key into text
other than the PEM that goes into the Secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}


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


def split_chain(pem: str | bytes) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError("no certificate in PEM data")
    return certs


def separate_root(
    certs: list[x509.Certificate],
) -> tuple[list[x509.Certificate], x509.Certificate | None]:
    """Take a trailing self-signed root off the chain: it belongs in ca.crt, not tls.crt."""
    if len(certs) > 1 and _self_signed(certs[-1]):
        return certs[:-1], certs[-1]
    return certs, None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):
        return False
    return True


def cert_info(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        dns_names=frozenset(dns_names(cert)),
    )


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.value.get_values_for_type(x509.DNSName)]


def public_fingerprint(key: PrivateKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: safe to publish, identifies the key pair."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
        == key.public_key().public_bytes(serialization.Encoding.DER, spki)
    )


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError("unsupported private key type")
    return key


def key_pem(key: PrivateKey, encoding: str = "PKCS8") -> bytes:
    """PEM for tls.key. PKCS1 means the traditional format; Ed25519 only has PKCS8."""
    fmt = serialization.PrivateFormat.PKCS8
    if encoding == "PKCS1" and not isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def chain_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def generate_key(algorithm: str = "ECDSA", size: int | None = None) -> PrivateKey:
    if algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)
    if algorithm == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ECDSA":
        curve = _CURVES.get(size or 256)
        if curve is None:
            raise ValueError(f"unsupported ECDSA size {size}")
        return ec.generate_private_key(curve)
    raise ValueError(f"unsupported key algorithm {algorithm!r}")


def key_fits(key: PrivateKey, algorithm: str, size: int | None) -> bool:
    """Does an existing key match the spec (for rotationPolicy: Never)?"""
    if algorithm == "RSA":
        return isinstance(key, rsa.RSAPrivateKey) and key.key_size == (size or 2048)
    if algorithm == "Ed25519":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == (size or 256)


_USAGES = {
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
}


def build_csr(
    key: PrivateKey,
    dns: list[str],
    *,
    common_name: str | None = None,
    subject: dict[str, list[str]] | None = None,
    usages: list[str] | None = None,
) -> bytes:
    """DER CSR with the SANs, optional subject fields and requested usages."""
    attrs: list[x509.NameAttribute[str]] = []
    subject = subject or {}
    for field_name, oid in (
        ("countries", NameOID.COUNTRY_NAME),
        ("provinces", NameOID.STATE_OR_PROVINCE_NAME),
        ("localities", NameOID.LOCALITY_NAME),
        ("organizations", NameOID.ORGANIZATION_NAME),
        ("organizationalUnits", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ):
        attrs.extend(x509.NameAttribute(oid, value) for value in subject.get(field_name, []))
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
    )
    if usages:
        ekus = [_USAGES[u] for u in usages if u in _USAGES]
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        ds = "digital signature" in usages
        ke = "key encipherment" in usages
        if ds or ke:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=ds,
                    content_commitment=False,
                    key_encipherment=ke,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.DER)
