"""What the repository will sign, whoever asks: reasonable keys, end-entity usages only.

Applied to every client CSR (plain and delegated finalize) before an issuer sees it; the
local CA additionally never copies CA usages into a leaf (defence in depth).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certdepot.acme import crypto, dnsname
from certdepot.acme.jws import b64decode
from certdepot.acme.problems import AcmeProblem

MIN_RSA_BITS = 2048
CURVES = {"secp256r1", "secp384r1", "secp521r1"}
# End-entity purposes a TLS certificate may carry; anything else (codeSigning, OCSPSigning,
# timeStamping, ...) is not for the repository to hand out.
ALLOWED_EKUS = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def key_problem(csr: x509.CertificateSigningRequest) -> str | None:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"RSA keys need at least {MIN_RSA_BITS} bits, not {key.key_size}"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in CURVES else f"EC curve {key.curve.name} not accepted"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return f"key type {type(key).__name__} not accepted"


def usage_problems(csr: x509.CertificateSigningRequest) -> list[str]:
    problems: list[str] = []
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            problems.append("basicConstraints: a CA certificate cannot be requested")
        elif isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            problems.append("keyUsage: keyCertSign/cRLSign are CA usages")
        elif isinstance(value, x509.ExtendedKeyUsage):
            extra = [u.dotted_string for u in value if u not in ALLOWED_EKUS]
            if extra:
                problems.append(f"extendedKeyUsage: only serverAuth/clientAuth, not {extra}")
        elif isinstance(value, x509.TLSFeature):
            # Refused, not dropped (docs/protocol.md): no issuer here guarantees the OCSP
            # responses a must-staple certificate needs to be usable at all.
            problems.append("TLS feature (must-staple) certificates are not issued here")
    return problems


def check(csr: x509.CertificateSigningRequest) -> None:
    """``AcmeProblem(badCSR)`` with one subproblem per reason, when the CSR asks too much."""
    reasons = [r for r in [key_problem(csr)] if r] + usage_problems(csr)
    if reasons:
        raise AcmeProblem("badCSR", "; ".join(reasons),
                          subproblems=[AcmeProblem("badCSR", r) for r in reasons])


def finalize_csr(payload: Mapping[str, Any]) -> tuple[x509.CertificateSigningRequest, bytes]:
    """The CSR of a finalize payload (base64url DER) with a verified signature, and the
    bytes the client sent (what the issuer signs from)."""
    csr_b64 = payload.get("csr")
    if not isinstance(csr_b64, str):
        raise AcmeProblem("malformed", "finalize needs a csr")
    try:
        csr_der = b64decode(csr_b64)
        csr = crypto.load_csr(csr_der)
    except ValueError:
        raise AcmeProblem("badCSR", "csr is not a base64url DER CSR") from None
    if not csr.is_signature_valid:
        raise AcmeProblem("badCSR", "CSR signature does not verify")
    return csr, csr_der


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The CSR's DNS names (SANs, and a CN not among them) in canonical form;
    ``rejectedIdentifier`` with a subproblem per name that is not a DNS name."""
    out: list[str] = []
    bad: list[AcmeProblem] = []
    for raw in crypto.csr_dns_names(csr):
        try:
            out.append(dnsname.normalize(raw))
        except dnsname.InvalidName as exc:
            bad.append(AcmeProblem("rejectedIdentifier", f"CSR name: {exc}",
                                   identifier={"type": "dns", "value": raw[:300]}))
    if bad:
        raise AcmeProblem("rejectedIdentifier", "the CSR names what is not a DNS name",
                          subproblems=bad)
    return out


def check_order_names(csr: x509.CertificateSigningRequest,
                      identifiers: Iterable[Mapping[str, str]]) -> list[str]:
    """The order's names, sorted; badCSR unless the CSR names exactly those (order and
    repeats aside)."""
    names = sorted(set(csr_names(csr)))
    wanted = sorted(i["value"] for i in identifiers)
    if names != wanted:
        raise AcmeProblem("badCSR", f"CSR names {names} differ from the order's {wanted}")
    return wanted
