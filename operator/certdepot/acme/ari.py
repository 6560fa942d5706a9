"""ACME Renewal Information (RFC 9773).

- ``cert_id(cert) -> str``: ``base64url(AKI keyIdentifier) "." base64url(serial DER content)``;
  the same string is the ``renewalInfo`` path segment and the newOrder ``replaces`` value.
- ``parse_cert_id(text) -> (aki_bytes, serial_int)``: ``AcmeProblem(malformed)`` if invalid.
- ``serial_der_bytes(serial)``: the DER INTEGER content octets (two's complement, minimal,
  so a leading 0x00 when the top bit is set).
- ``default_window(not_before, not_after)``: the window a server suggests when it has no
  reason to hurry: from 2/3 to 5/6 of the lifetime, as ``(start, end)``.
- ``choose_renewal_time(start, end, rand)``: a uniformly random moment in a window (§4.2 asks
  clients to pick one at random).
"""

from __future__ import annotations

import datetime as dt
import random

from cryptography import x509

from certdepot.acme.jws import b64decode, b64encode
from certdepot.acme.problems import AcmeProblem


def serial_der_bytes(serial: int) -> bytes:
    """Content octets of the DER INTEGER encoding of a (positive) serial number."""
    if serial < 0:
        raise ValueError("serial numbers are positive")
    length = serial.bit_length() // 8 + 1  # +1 leaves room for the sign bit
    return serial.to_bytes(length, "big")


def authority_key_identifier(cert: x509.Certificate) -> bytes:
    """The keyIdentifier of the certificate's AKI extension; ``ValueError`` when absent."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        raise ValueError("certificate has no Authority Key Identifier") from None
    if ext.value.key_identifier is None:
        raise ValueError("certificate's Authority Key Identifier has no keyIdentifier")
    return ext.value.key_identifier


def cert_id_from_parts(aki: bytes, serial: int) -> str:
    """The CertID for an AKI keyIdentifier and serial number."""
    return f"{b64encode(aki)}.{b64encode(serial_der_bytes(serial))}"


def cert_id(cert: x509.Certificate) -> str:
    """The RFC 9773 CertID of a certificate."""
    return cert_id_from_parts(authority_key_identifier(cert), cert.serial_number)


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """Split a CertID into (AKI keyIdentifier, serial number)."""
    parts = text.split(".")
    if len(parts) != 2 or not all(parts):
        raise AcmeProblem("malformed", f"{text!r} is not a certificate identifier")
    try:
        aki = b64decode(parts[0])
        serial_bytes = b64decode(parts[1])
    except ValueError:
        raise AcmeProblem("malformed", f"{text!r} is not base64url") from None
    if serial_bytes[0] & 0x80:
        raise AcmeProblem("malformed", "certificate identifier has a negative serial")
    return aki, int.from_bytes(serial_bytes, "big")


def default_window(
    not_before: dt.datetime, not_after: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """A window in the last third of the lifetime, ending well before expiry."""
    lifetime = not_after - not_before
    return not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6


def choose_renewal_time(
    start: dt.datetime, end: dt.datetime, rand: random.Random | None = None
) -> dt.datetime:
    """A random moment in [start, end] (start if the window is empty or reversed)."""
    if end <= start:
        return start
    fraction = (rand or random.SystemRandom()).random()
    return start + (end - start) * fraction
