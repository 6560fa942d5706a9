"""Private keys wrapped for one recipient (the certificate download extension, CONTRACTS §3).

A JWE compact serialization with protected header
``{"alg": "ECDH-ES", "enc": "A256GCM", "cty": "application/pkcs8", "epk": ...}`` whose
plaintext is the private key as PKCS#8 DER. Built on joserfc.

- ``generate_ephemeral(curve="P-256") -> (private_key, public_jwk)``: a one-time recipient key
  (``P-256``, ``P-384``, ``P-521`` or ``X25519``); the private half never leaves the client.
- ``validate_ephemeral_jwk(jwk) -> dict``: server side, at finalize; ``AcmeProblem(badPublicKey)``
  unless a public EC P-256/384/521 or OKP X25519 JWK.
- ``wrap_private_key(key, recipient_public_jwk) -> str``: the JWE for the recipient.
- ``unwrap_private_key(jwe, ephemeral_private_key) -> PrivateKey``: ``KeyWrapError`` when the
  header is not the expected one or decryption fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from certdepot.acme.crypto import PrivateKey, load_private_key, private_key_to_pkcs8_der
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


def _import_public(jwk: Any) -> ECKey | OKPKey:
    if not isinstance(jwk, Mapping):
        raise AcmeProblem("badPublicKey", "ephemeral-jwk is not a JSON object")
    if "d" in jwk:
        raise AcmeProblem("badPublicKey", "ephemeral-jwk contains private key material")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        if kty == "EC" and crv in _CURVES:
            return ECKey.import_key(dict(jwk))
        if kty == "OKP" and crv == "X25519":
            return OKPKey.import_key(dict(jwk))
    except (ValueError, TypeError, KeyError, JoseError) as exc:
        raise AcmeProblem(
            "badPublicKey", f"ephemeral-jwk is not a valid {kty} key: {exc}"
        ) from None
    raise AcmeProblem(
        "badPublicKey", f"ephemeral-jwk must be EC P-256/P-384/P-521 or OKP X25519, not {kty}/{crv}"
    )


def validate_ephemeral_jwk(jwk: Any) -> dict[str, str]:
    """The public JWK, normalised, if it is an acceptable recipient key."""
    key = _import_public(jwk)
    return {str(k): str(v) for k, v in key.as_dict(private=False).items()}


def wrap_private_key(key: PrivateKey, recipient_public_jwk: Mapping[str, Any]) -> str:
    """Encrypt ``key`` (as PKCS#8 DER) to the recipient; returns the JWE compact string."""
    recipient = _import_public(recipient_public_jwk)
    header = {"alg": ALG, "enc": ENC, "cty": CTY}
    return jwe.encrypt_compact(header, private_key_to_pkcs8_der(key), recipient)


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
