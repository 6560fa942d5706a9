"""What the embedded CA puts in a leaf: built from policy, never copied from the client.

A CSR is a request, not a template: its subject (O, OU, L, ...) is the client's word and
is never signed. The leaf's subject is the first DNS name as CN when it fits (RFC 5280
ub-common-name: 64), else empty; an empty subject makes the SAN extension critical
(RFC 5280 §4.2.1.6). Key usage follows the key type (RFC 5480 §3, RFC 8813: an EC or
Ed25519 key signs, an RSA key signs and, for TLS 1.2 RSA key exchange, enciphers);
extended key usage is serverAuth, plus clientAuth when the CSR asks for it (csrpolicy
refused anything else). The result passes ``openssl verify -x509_strict``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: RFC 5280 ub-common-name.
MAX_CN = 64


def subject(dns_names: list[str]) -> x509.Name:
    """CN = the first DNS name when it fits, else the empty name."""
    if dns_names and len(dns_names[0]) <= MAX_CN:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    return x509.Name([])


def san(dns_names: list[str], subject_name: x509.Name) -> tuple[x509.SubjectAlternativeName,
                                                                 bool]:
    """The SAN extension and its criticality (critical exactly when the subject is empty)."""
    if not dns_names:
        raise ValueError("a leaf needs at least one DNS name")
    return (x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
            len(subject_name) == 0)


def key_usage(csr: x509.CertificateSigningRequest) -> x509.KeyUsage:
    """digitalSignature, and keyEncipherment for RSA keys; a CSR that names usages gets
    those of them the key type allows (never more than it asked, never none)."""
    encipher = isinstance(csr.public_key(), rsa.RSAPublicKey)
    try:
        asked = csr.extensions.get_extension_for_class(x509.KeyUsage).value
        sign, encipher = asked.digital_signature, encipher and asked.key_encipherment
        if not (sign or encipher):
            sign = True
    except x509.ExtensionNotFound:
        sign = True
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=encipher,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


def extended_key_usage(csr: x509.CertificateSigningRequest) -> x509.ExtendedKeyUsage:
    """serverAuth and/or clientAuth as the CSR asks (serverAuth when it does not say)."""
    known = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    try:
        asked = list(csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        asked = []
    return x509.ExtendedKeyUsage([u for u in known if u in asked]
                                 or [ExtendedKeyUsageOID.SERVER_AUTH])


def apply(builder: x509.CertificateBuilder, csr: x509.CertificateSigningRequest,
          dns_names: list[str]) -> x509.CertificateBuilder:
    """Subject, SAN, key usage and extended key usage of a leaf for ``dns_names``."""
    name = subject(dns_names)
    ext, critical = san(dns_names, name)
    return (builder.subject_name(name)
            .add_extension(ext, critical=critical)
            .add_extension(key_usage(csr), critical=True)
            .add_extension(extended_key_usage(csr), critical=False))
