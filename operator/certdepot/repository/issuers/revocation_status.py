"""CRL and OCSP for the embedded CA: what it revoked, where its certificates say to look.

Every local-CA certificate names two URLs (RFC 5280 §4.2.1.13 CRL distribution point, §4.2.2.1
authority information access): ``{baseUrl}/ca/{issuer}/crl`` (DER CRL, RFC 5280 §5) and
``{baseUrl}/ca/{issuer}/ocsp`` (RFC 6960, POST or GET). Both are signed by the CA's own key
and built with cryptography's x509 CRL and OCSP builders from the store: a certificate is
revoked when its row says so (rotation.py records when and why).

A CRL is valid for ``CRL_LIFETIME`` and rebuilt when a revocation is added; an OCSP answer
for ``OCSP_LIFETIME``. An OCSP request for another issuer is ``unauthorized`` (RFC 6960
§2.3), a malformed one ``malformedRequest``.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from certdepot.acme import crypto
from certdepot.repository import store as tables
from certdepot.repository.store import Store

CRL_LIFETIME = dt.timedelta(hours=24)
OCSP_LIFETIME = dt.timedelta(hours=1)
_REASONS = {
    0: x509.ReasonFlags.unspecified, 1: x509.ReasonFlags.key_compromise,
    3: x509.ReasonFlags.affiliation_changed, 4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation, 9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


def crl_url(base_url: str, issuer: str) -> str:
    return f"{base_url.rstrip('/')}/ca/{issuer}/crl"


def ocsp_url(base_url: str, issuer: str) -> str:
    return f"{base_url.rstrip('/')}/ca/{issuer}/ocsp"


def add_status_urls(builder: x509.CertificateBuilder, base_url: str | None,
                    issuer: str) -> x509.CertificateBuilder:
    """A leaf under construction, with where to find its revocation status."""
    if not base_url:
        return builder
    crl = x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(crl_url(base_url, issuer))],
        relative_name=None, reasons=None, crl_issuer=None)])
    aia = x509.AuthorityInformationAccess([x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP,
        x509.UniformResourceIdentifier(ocsp_url(base_url, issuer)))])
    return builder.add_extension(crl, critical=False).add_extension(aia, critical=False)


@dataclass(frozen=True)
class Revoked:
    serial: int
    when: dt.datetime
    reason: int


def revoked(store: Store, issuer: str) -> list[Revoked]:
    """Every certificate of ``issuer`` revoked here, oldest first."""
    out: list[Revoked] = []
    for row in store.select(tables.certificates, tables.certificates.c.issuer == issuer,
                            tables.certificates.c.revoked.is_(True),
                            order_by=tables.certificates.c.created):
        rev = store.get(tables.revocations, row["id"])
        at = rev["revoked_at"] if rev else row["created"]
        out.append(Revoked(int(row["serial"], 16), dt.datetime.fromtimestamp(at, dt.UTC),
                           int(rev["reason"]) if rev else 0))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class StatusPublisher:
    """CRL and OCSP answers of one local CA (its root certificate and key)."""

    def __init__(self, name: str, root: x509.Certificate, key: crypto.PrivateKey) -> None:
        self.name = name
        self.root = root
        self.key = key
        self._lock = threading.Lock()
        self._crl: tuple[int, dt.datetime, bytes] | None = None  # (count, built, DER)

    def crl(self, store: Store) -> bytes:
        """The current CRL (DER), rebuilt when a revocation was added or half its life."""
        entries = revoked(store, self.name)
        now = _now()
        with self._lock:
            cached = self._crl
            if cached and cached[0] == len(entries) and now - cached[1] < CRL_LIFETIME / 2:
                return cached[2]
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.root.subject).last_update(now)
                   .next_update(now + CRL_LIFETIME)
                   # Increases with time: a relying party keeps the newest it has seen.
                   .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        for e in entries:
            item = (x509.RevokedCertificateBuilder().serial_number(e.serial)
                    .revocation_date(e.when))
            if e.reason:  # RFC 5280 §5.3.1: unspecified is expressed by omission
                item = item.add_extension(x509.CRLReason(_REASONS.get(
                    e.reason, x509.ReasonFlags.unspecified)), critical=False)
            builder = builder.add_revoked_certificate(item.build())
        der = builder.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)
        with self._lock:
            self._crl = (len(entries), now, der)
        return der

    def _hashes(self, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        """RFC 6960 CertID issuerNameHash and issuerKeyHash (over the subjectPublicKey
        BIT STRING's value, not the whole SubjectPublicKeyInfo) for ``algorithm``."""
        spki = self.root.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        name, key = hashes.Hash(algorithm), hashes.Hash(algorithm)
        name.update(self.root.subject.public_bytes())
        key.update(_subject_public_key(spki))
        return name.finalize(), key.finalize()

    def ocsp(self, store: Store, request_der: bytes) -> bytes:
        """The DER OCSP response to a DER request (never raises on client input)."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
            algorithm = req.hash_algorithm
            nonce = _nonce(req)
        except Exception:  # any parse failure of client bytes: not a 5xx
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if (req.issuer_name_hash, req.issuer_key_hash) != self._hashes(algorithm):
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        row = _row(store, self.name, req.serial_number)
        now = _now()
        status, when, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        if row is not None and row["revoked"]:
            rev = store.get(tables.revocations, row["id"])
            status = ocsp.OCSPCertStatus.REVOKED
            when = dt.datetime.fromtimestamp(rev["revoked_at"] if rev else row["created"],
                                             dt.UTC)
            reason = _REASONS.get(int(rev["reason"]) if rev else 0)
        elif row is not None:
            status = ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=req.issuer_name_hash, issuer_key_hash=req.issuer_key_hash,
            serial_number=req.serial_number, algorithm=algorithm, cert_status=status,
            this_update=now, next_update=now + OCSP_LIFETIME, revocation_time=when,
            revocation_reason=reason,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.root).certificates([self.root])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def _row(store: Store, issuer: str, serial: int) -> dict[str, Any] | None:
    rows = store.select(tables.certificates, tables.certificates.c.issuer == issuer,
                        tables.certificates.c.serial == format(serial, "x"))
    return rows[0] if rows else None


def _nonce(req: ocsp.OCSPRequest) -> bytes | None:
    try:
        ext = req.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    return ext.value.nonce if 1 <= len(ext.value.nonce) <= 128 else None


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)


def _subject_public_key(spki_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet) of a DER
    SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING }."""
    def header(data: bytes, at: int) -> tuple[int, int]:  # (content start, content length)
        length = data[at + 1]
        if length < 0x80:
            return at + 2, length
        n = length & 0x7F
        return at + 2 + n, int.from_bytes(data[at + 2:at + 2 + n], "big")

    start, _ = header(spki_der, 0)  # into the outer SEQUENCE
    alg_start, alg_len = header(spki_der, start)
    bit_start, bit_len = header(spki_der, alg_start + alg_len)
    return spki_der[bit_start + 1:bit_start + bit_len]
