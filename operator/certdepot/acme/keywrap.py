"""Private keys wrapped for one recipient (the download extension, docs/protocol.md §4).

A JWE compact serialization with protected header
``{"alg": "ECDH-ES", "enc": "A256GCM", "cty": "application/pkcs8", "epk": ...}`` whose
plaintext is the private key as PKCS#8 DER. Built on joserfc.

- ``generate_ephemeral(curve="P-256") -> (private_key, public_jwk)``: a one-time recipient key
  (``P-256``, ``P-384``, ``P-521`` or ``X25519``); the private half never leaves the client.
- ``validate_ephemeral_jwk(jwk) -> dict``: server side, at finalize; ``AcmeProblem(badPublicKey)``
  unless a usable public ECDH key: EC P-256/384/521 with a point on its curve, or OKP X25519
  that is not a low-order point; canonical base64url coordinates of the curve's length; no
  private members; ``use`` (if any) ``enc``; ``key_ops`` (if any) only deriveKey/deriveBits;
  ``alg`` (if any) ECDH-ES. Returns only the members RFC 7638 names (kty, crv, x[, y]).
- ``wrap_private_key(key, recipient_public_jwk) -> str``: the JWE for the recipient (the same
  checks; ``AcmeProblem(badPublicKey)``, never another exception, for a bad recipient).
- ``wrap_pkcs8(der, recipient_public_jwk) -> str``: the same for a key already encoded as
  PKCS#8 DER.
- ``unwrap_private_key(jwe, ephemeral_private_key) -> PrivateKey``: ``KeyWrapError`` when the
  header is not the expected one or decryption fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from certdepot.acme import fields
from certdepot.acme.crypto import PrivateKey, load_private_key, private_key_to_pkcs8_der
from certdepot.acme.jws import b64decode, b64encode, check_key_use
from certdepot.acme.problems import AcmeProblem

EphemeralKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey

ALG = "ECDH-ES"
ENC = "A256GCM"
CTY = "application/pkcs8"
MEDIA_TYPE = "application/jose"

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
#: What the recipient's key is used for here: the sender derives the content key with it.
KEY_OPS = frozenset({"deriveKey", "deriveBits"})
_X25519_P = 2**255 - 19
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class KeyWrapError(ValueError):
    """A wrapped key could not be unwrapped (never includes key material)."""


def generate_ephemeral(curve: str = "P-256") -> tuple[EphemeralKey, dict[str, str]]:
    """A fresh recipient key pair: the private key object and its public JWK."""
    private: EphemeralKey
    if curve == "X25519":
        private = x25519.X25519PrivateKey.generate()
        public = OKPKey.import_key(private).as_dict(private=False)
    elif curve in _CURVES:
        private = ec.generate_private_key(_CURVES[curve])
        public = ECKey.import_key(private).as_dict(private=False)
    else:
        raise ValueError(f"unsupported ephemeral curve {curve!r}")
    return private, {str(k): str(v) for k, v in public.items()}


def _bad(detail: str) -> AcmeProblem:
    return AcmeProblem("badPublicKey", f"{fields.EPHEMERAL_JWK} {detail}")


def _coordinate(jwk: Mapping[str, Any], member: str, size: int) -> bytes:
    value = jwk.get(member)
    try:
        raw = b64decode(value) if isinstance(value, str) else b""
    except ValueError:
        raise _bad(f"{member} is not canonical base64url") from None
    if len(raw) != size:
        raise _bad(f"{member} must be {size} bytes")
    return raw


def _ec_point(crv: str, jwk: Mapping[str, Any]) -> dict[str, str]:
    curve = _CURVES[crv]
    size = (curve.key_size + 7) // 8
    x, y = _coordinate(jwk, "x", size), _coordinate(jwk, "y", size)
    try:  # cryptography refuses a point that is not on the curve (the curves' cofactor is 1)
        ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                      curve).public_key()
    except ValueError:
        raise _bad(f"is not a point on {crv}") from None
    return {"kty": "EC", "crv": crv, "x": b64encode(x), "y": b64encode(y)}


def _x25519_point(jwk: Mapping[str, Any]) -> dict[str, str]:
    if "y" in jwk:
        raise _bad("of kty OKP has no y")
    x = _coordinate(jwk, "x", 32)
    if int.from_bytes(x, "little") >= _X25519_P:
        # RFC 7748 §5 masks the top bit and reduces mod p: such a text names another point
        # than it spells, so only the canonical encoding is taken.
        raise _bad("x is not a canonical X25519 u-coordinate")
    public = x25519.X25519PublicKey.from_public_bytes(x)
    # RFC 7748 §6.1: a low-order point makes every shared secret all-zero (OpenSSL then
    # refuses the exchange). One trial exchange finds all of them, non-canonical
    # encodings of them included, without a list to keep complete.
    try:
        x25519.X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise _bad("is a low-order X25519 point") from None
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "X25519", "x": b64encode(raw)}


def _check_public(jwk: Any) -> dict[str, str]:
    """Every check a recipient key gets; its RFC 7638 members when it passes."""
    if not isinstance(jwk, Mapping):
        raise _bad("is not a JSON object")
    if any(m in jwk for m in _PRIVATE_MEMBERS):
        raise _bad("contains private key material")
    check_key_use(jwk, use="enc", ops=KEY_OPS, what=fields.EPHEMERAL_JWK)
    if "key_ops" in jwk and not set(jwk["key_ops"]) <= KEY_OPS:
        raise _bad(f"key_ops may only allow {sorted(KEY_OPS)}")
    if "alg" in jwk and jwk["alg"] != ALG:
        raise _bad(f"alg must be {ALG}")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC" and isinstance(crv, str) and crv in _CURVES:
        return _ec_point(crv, jwk)
    if kty == "OKP" and crv == "X25519":
        return _x25519_point(jwk)
    raise _bad(f"must be EC P-256/P-384/P-521 or OKP X25519, not {kty!r}/{crv!r}")


def _import_public(jwk: Any) -> ECKey | OKPKey:
    members: dict[str, str | list[str]] = dict(_check_public(jwk))
    try:
        if members["kty"] == "EC":
            return ECKey.import_key(members)
        return OKPKey.import_key(members)
    except (ValueError, TypeError, KeyError, JoseError):
        raise _bad("cannot be imported") from None


def validate_ephemeral_jwk(jwk: Any) -> dict[str, str]:
    """The public JWK, normalised, if it is an acceptable recipient key."""
    return _check_public(jwk)


def wrap_private_key(key: PrivateKey, recipient_public_jwk: Mapping[str, Any]) -> str:
    """Encrypt ``key`` (as PKCS#8 DER) to the recipient; returns the JWE compact string."""
    return wrap_pkcs8(private_key_to_pkcs8_der(key), recipient_public_jwk)


def wrap_pkcs8(pkcs8_der: bytes, recipient_public_jwk: Mapping[str, Any]) -> str:
    """``wrap_private_key`` for a key already encoded as PKCS#8 DER (the repository keeps
    the encoding of a managed certificate's key, not the key object, between downloads)."""
    recipient = _import_public(recipient_public_jwk)
    header = {"alg": ALG, "enc": ENC, "cty": CTY}
    try:
        return jwe.encrypt_compact(header, pkcs8_der, recipient)
    except (JoseError, ValueError) as exc:  # no key material in the message
        raise _bad(f"cannot be encrypted to: {type(exc).__name__}") from None


def unwrap_private_key(token: str | bytes, ephemeral_private_key: EphemeralKey) -> PrivateKey:
    """Decrypt a wrapped key with the ephemeral private key and load it."""
    recipient: ECKey | OKPKey
    if isinstance(ephemeral_private_key, x25519.X25519PrivateKey):
        recipient = OKPKey.import_key(ephemeral_private_key)
    else:
        recipient = ECKey.import_key(ephemeral_private_key)
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    try:
        result = jwe.decrypt_compact(text.strip(), recipient, algorithms=[ALG, ENC])
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyWrapError(f"cannot decrypt the wrapped key: {type(exc).__name__}") from None
    header = result.protected
    if header.get("alg") != ALG or header.get("enc") != ENC:
        raise KeyWrapError(f"unexpected JWE algorithms {header.get('alg')}/{header.get('enc')}")
    if header.get("cty") not in (CTY, None):
        raise KeyWrapError(f"unexpected JWE content type {header.get('cty')!r}")
    if result.plaintext is None:
        raise KeyWrapError("JWE has no plaintext")
    try:
        return load_private_key(result.plaintext)
    except ValueError as exc:
        raise KeyWrapError(str(exc)) from None
