"""Keys, CSRs and certificates on ``cryptography``: the pieces both ACME roles need.

API (all pure, no I/O):

- ``PrivateKey`` / ``PublicKey``: the key types ACME uses (EC P-256/384/521, RSA, Ed25519).
- ``generate_private_key(kind="ec-p256")``: kinds ``ec-p256 ec-p384 ec-p521 rsa-2048 rsa-3072
  rsa-4096 ed25519``.
- ``private_key_to_pem(key, password=None, *, traditional=False)``,
  ``load_private_key(data, password=None)`` (PEM or DER), ``private_key_to_pkcs8_der(key)``,
  ``key_type_name(key)``, ``public_key_fingerprint(key)``.
- ``build_csr(key, dns_names, *, common_name=None, subject=None, key_usage=None,
  extended_key_usage=None) -> bytes`` (DER), ``load_csr(data)``, ``csr_dns_names(csr)``.
- ``load_certificate(data)``, ``parse_pem_chain(pem) -> list[Certificate]``,
  ``split_pem_chain(pem) -> list[str]``, ``chain_to_pem(certs) -> bytes``,
  ``separate_root(certs)``, ``certificate_dns_names(cert)``, ``fingerprint_sha256(cert)``,
  ``serial_hex(cert)``, ``public_key_matches(key, cert)``, ``verify_chain(chain, roots,
  now=None)`` (raises ``ChainError``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

KEY_KINDS = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")

_CURVES: dict[str, ec.EllipticCurve] = {
    "ec-p256": ec.SECP256R1(),
    "ec-p384": ec.SECP384R1(),
    "ec-p521": ec.SECP521R1(),
}

# Subject attribute names as RFC 9115 CSR templates spell them.
SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "country": NameOID.COUNTRY_NAME,
    "stateOrProvince": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "commonName": NameOID.COMMON_NAME,
}

KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)

EXTENDED_KEY_USAGES: dict[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def eku_oid(name: str) -> x509.ObjectIdentifier:
    """An extended key usage by RFC 9115 name (``serverAuth``) or dotted OID."""
    if name in EXTENDED_KEY_USAGES:
        return EXTENDED_KEY_USAGES[name]
    if _DOTTED_OID.match(name):
        return x509.ObjectIdentifier(name)
    raise ValueError(f"unknown extended key usage {name!r}")


class ChainError(ValueError):
    """A certificate chain does not verify (message says which link and why)."""


def generate_private_key(kind: str = "ec-p256") -> PrivateKey:
    """A fresh private key of ``kind`` (one of ``KEY_KINDS``)."""
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind])
    if kind.startswith("rsa-"):
        size = int(kind.removeprefix("rsa-"))
        if size < 2048:
            raise ValueError("RSA keys shorter than 2048 bits are not accepted")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; choose one of {', '.join(KEY_KINDS)}")


def key_type_name(key: PrivateKey | PublicKey) -> str:
    """The ``KEY_KINDS`` name of a key (``ec-p256``, ``rsa-2048``, ``ed25519``)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            key.curve.name, f"ec-{key.curve.name}"
        )
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return "ed25519"


def private_key_to_pem(
    key: PrivateKey, password: bytes | None = None, *, traditional: bool = False
) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when given.

    ``traditional`` asks for the PKCS#1-era "RSA/EC PRIVATE KEY" form some TLS servers still
    want; Ed25519 has no such form and stays PKCS#8.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.PKCS8
    if traditional and not isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def public_key_fingerprint(key: PrivateKey) -> str:
    """Hex SHA-256 of the SubjectPublicKeyInfo: safe to publish, identifies the key pair."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def private_key_to_pkcs8_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER (what the download extension wraps in a JWE)."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(data: bytes | str, password: bytes | None = None) -> PrivateKey:
    """Load a PEM or DER private key of a supported type; ``ValueError`` otherwise.

    The error never includes the key material.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(raw, password)
        else:
            key = serialization.load_der_private_key(raw, password)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a loadable private key ({type(exc).__name__})") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


_CsrHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def _signing_hash(key: PrivateKey) -> _CsrHash | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve: dict[str, _CsrHash] = {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}
        return by_curve.get(key.curve.name, hashes.SHA256())
    return hashes.SHA256()


SubjectValues = Mapping[str, str | Sequence[str]]


def build_name(attributes: SubjectValues) -> x509.Name:
    """An X.509 Name from RFC 9115 attribute names (``commonName``, ``organization``...).

    A value may be a list: the attribute then appears once per value, in order.
    """
    parts: list[x509.NameAttribute[str]] = []
    for name, value in attributes.items():
        if name not in SUBJECT_ATTRIBUTES:
            raise ValueError(f"unknown subject attribute {name!r}")
        values = [value] if isinstance(value, str) else list(value)
        parts.extend(x509.NameAttribute(SUBJECT_ATTRIBUTES[name], v) for v in values)
    return x509.Name(parts)


def build_csr(
    key: PrivateKey,
    dns_names: Sequence[str],
    *,
    common_name: str | None = None,
    subject: SubjectValues | None = None,
    key_usage: Iterable[str] | None = None,
    extended_key_usage: Iterable[str] | None = None,
    signature_hash: str | None = None,
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
) -> bytes:
    """A DER CSR with the DNS names as SANs; subject empty unless given.

    ``key_usage`` / ``extended_key_usage`` take RFC 9115 names (``digitalSignature``,
    ``serverAuth``... or a dotted OID for an extended key usage); ``emails``/``uris`` add
    rfc822Name / URI SANs. ``signature_hash`` (``sha256``/``sha384``/``sha512``) overrides the
    hash that otherwise follows the key size. Empty subjects are fine for ACME: the CA reads
    the SANs.
    """
    if not dns_names:
        raise ValueError("a CSR needs at least one DNS name")
    attrs: dict[str, str | Sequence[str]] = dict(subject or {})
    if common_name:
        attrs["commonName"] = common_name
    builder = x509.CertificateSigningRequestBuilder().subject_name(build_name(attrs))
    builder = builder.add_extension(
        x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in dns_names]
            + [x509.RFC822Name(e) for e in emails]
            + [x509.UniformResourceIdentifier(u) for u in uris]
        ),
        critical=False,
    )
    if key_usage is not None:
        usages = set(key_usage)
        unknown = usages - set(KEY_USAGES)
        if unknown:
            raise ValueError(f"unknown key usages {sorted(unknown)}")
        flags = {_snake(u): (u in usages) for u in KEY_USAGES}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if extended_key_usage is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([eku_oid(e) for e in extended_key_usage]), critical=False
        )
    algorithm = _signing_hash(key)
    if signature_hash is not None and algorithm is not None:
        by_name: dict[str, _CsrHash] = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
        }
        algorithm = by_name[signature_hash]
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.DER)


def _snake(name: str) -> str:
    # cryptography's KeyUsage keywords: digitalSignature -> digital_signature, cRLSign -> crl_sign
    special = {
        "nonRepudiation": "content_commitment",
        "cRLSign": "crl_sign",
        "keyCertSign": "key_cert_sign",
    }
    if name in special:
        return special[name]
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Load a PEM or DER CSR; ``ValueError`` when it is not one."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_csr(raw)
        return x509.load_der_x509_csr(raw)
    except ValueError as exc:
        raise ValueError(f"not a CSR: {exc}") from None


def csr_dns_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """DNS SANs of a CSR plus a CN that is not already among them, lower-cased, in order."""
    names: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = str(attr.value).lower()
        if cn not in names:
            names.append(cn)
    return names


def load_certificate(data: bytes | str) -> x509.Certificate:
    """Load one PEM or DER certificate."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(raw)
    return x509.load_der_x509_certificate(raw)


def split_pem_chain(pem: str | bytes) -> list[str]:
    """The PEM blocks of a chain, each ending in a newline, leaf first as served."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    blocks: list[str] = []
    end = "-----END CERTIFICATE-----"
    for part in text.split(end)[:-1]:
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + end + "\n")
    return blocks


def parse_pem_chain(pem: str | bytes) -> list[x509.Certificate]:
    """All certificates of a PEM chain; ``ValueError`` if there are none."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate chain: {exc}") from None
    return certs


def chain_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """The PEM blocks of ``certs`` concatenated, in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def separate_root(
    certs: list[x509.Certificate],
) -> tuple[list[x509.Certificate], x509.Certificate | None]:
    """Take a trailing self-signed root off a chain (it belongs in a trust store, not served)."""
    if len(certs) > 1 and _self_signed(certs[-1]):
        return certs[:-1], certs[-1]
    return certs, None


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def certificate_dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS SANs of a certificate (lower-cased)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate, no separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    """Lower-case hex serial number without leading zeros or separators."""
    return format(cert.serial_number, "x")


def public_key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` certifies the public half of ``key``."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, fmt) == cert.public_key().public_bytes(enc, fmt)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Check that ``chain`` (leaf first) links by signature to one of ``roots``.

    Every certificate must be within its validity period at ``now``. Returns the root that
    anchors the chain; raises ``ChainError`` naming the failing link otherwise. This is a
    pinning check (is this chain from the CA we expect?), not a full RFC 5280 path validation.
    """
    if not chain:
        raise ChainError("empty certificate chain")
    if not roots:
        raise ChainError("no trust anchors given")
    moment = now or dt.datetime.now(dt.UTC)
    for index, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise ChainError(
                f"certificate {index} ({cert.subject.rfc4514_string()!r}) is not valid now"
            )
    for index in range(len(chain) - 1):
        if not _issued_by(chain[index], chain[index + 1]):
            raise ChainError(f"certificate {index} is not signed by certificate {index + 1}")
    last = chain[-1]
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    if last.public_bytes(serialization.Encoding.DER) in root_ders:
        return last
    for root in roots:
        if _issued_by(last, root):
            return root
    raise ChainError("the chain does not lead to the pinned root")
