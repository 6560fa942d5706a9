"""A tiny in-memory PKI for unit tests: a root, an intermediate, leaves with chosen fields."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certdepot.acme import crypto

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    cn: str, issuer: tuple[x509.Certificate, crypto.PrivateKey] | None = None
) -> tuple[x509.Certificate, crypto.PrivateKey]:
    key = crypto.generate_private_key("ec-p256")
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer_pub = issuer_key.public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub),
        critical=False,
    )
    return builder.sign(issuer_key, hashes.SHA256()), key


def make_leaf(
    issuer: tuple[x509.Certificate, crypto.PrivateKey],
    names: list[str],
    *,
    key: crypto.PrivateKey | None = None,
    serial: int | None = None,
    aki: bytes | None = None,
    lifetime: dt.timedelta = dt.timedelta(days=90),
) -> tuple[x509.Certificate, crypto.PrivateKey]:
    leaf_key = key or crypto.generate_private_key("ec-p256")
    issuer_cert, issuer_key = issuer
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=1))
        .not_valid_after(NOW + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier(aki or ski, None, None), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256()), leaf_key


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
