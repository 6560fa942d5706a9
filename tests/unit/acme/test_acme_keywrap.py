"""JWE key wrapping for the download extension (docs/protocol.md §4)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from certdepot.acme import crypto, jws, keywrap
from certdepot.acme.problems import AcmeProblem


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521", "X25519"])
@pytest.mark.parametrize("kind", ["ec-p256", "rsa-2048", "ed25519"])
def test_wrap_unwrap_roundtrip(curve: str, kind: str) -> None:
    private, public = keywrap.generate_ephemeral(curve)
    assert "d" not in public
    key = crypto.generate_private_key(kind)
    token = keywrap.wrap_private_key(key, public)
    header = json.loads(jws.b64decode(token.split(".")[0]))
    assert header["alg"] == "ECDH-ES" and header["enc"] == "A256GCM"
    assert header["cty"] == "application/pkcs8" and "epk" in header
    assert token.count(".") == 4 and token.split(".")[1] == ""  # direct key agreement: no CEK
    unwrapped = keywrap.unwrap_private_key(token, private)
    assert crypto.private_key_to_pkcs8_der(unwrapped) == crypto.private_key_to_pkcs8_der(key)


def test_other_recipient_cannot_unwrap() -> None:
    _, public = keywrap.generate_ephemeral()
    other, _ = keywrap.generate_ephemeral()
    token = keywrap.wrap_private_key(crypto.generate_private_key(), public)
    with pytest.raises(keywrap.KeyWrapError):
        keywrap.unwrap_private_key(token, other)
    with pytest.raises(keywrap.KeyWrapError):
        keywrap.unwrap_private_key("not.a.jwe", other)


@pytest.mark.parametrize(
    "jwk",
    [
        None,
        "x",
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
    ],
)
def test_unacceptable_recipient_keys_are_bad_public_key(jwk: object) -> None:
    with pytest.raises(AcmeProblem) as exc:
        keywrap.validate_ephemeral_jwk(jwk)
    assert exc.value.short_type == "badPublicKey"


def test_private_member_is_refused_and_valid_key_normalised() -> None:
    private, public = keywrap.generate_ephemeral("P-384")
    assert keywrap.validate_ephemeral_jwk(public) == public
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    with_d = ECKey.import_key(private).as_dict(private=True)
    with pytest.raises(AcmeProblem, match="private"):
        keywrap.validate_ephemeral_jwk(with_d)


# ---- the recipient key is checked fully at finalize (issue 15, item 3) -------------------

_LOW_ORDER_X25519 = [  # RFC 7748 §6.1 / the points libsodium lists, canonical encodings
    "00" * 32, "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
]
_NON_CANONICAL_X25519 = ["ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f",
                         "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
                         "d9" + "ff" * 31]


@pytest.mark.parametrize("hex_x", _LOW_ORDER_X25519 + _NON_CANONICAL_X25519)
def test_low_order_or_non_canonical_x25519_is_refused(hex_x: str) -> None:
    jwk = {"kty": "OKP", "crv": "X25519", "x": jws.b64encode(bytes.fromhex(hex_x))}
    with pytest.raises(AcmeProblem) as exc:
        keywrap.validate_ephemeral_jwk(jwk)
    assert exc.value.short_type == "badPublicKey"
    with pytest.raises(AcmeProblem):  # and never a 500 later, at key fetch
        keywrap.wrap_private_key(crypto.generate_private_key(), jwk)


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521", "X25519"])
@pytest.mark.parametrize("over", [
    {"use": "sig"}, {"key_ops": ["sign"]}, {"key_ops": ["verify"]}, {"key_ops": []},
    {"key_ops": ["deriveKey", "encrypt"]}, {"key_ops": "deriveKey"}, {"alg": "ES256"},
    {"d": "AQ"}, {"kty": "RSA"}, {"crv": "P-192"}, {"x": "AA=="}, {"x": "A"},
])
def test_ephemeral_mutations_are_bad_public_keys(curve: str, over: dict[str, object]) -> None:
    _, jwk = keywrap.generate_ephemeral(curve)
    with pytest.raises(AcmeProblem) as exc:
        keywrap.validate_ephemeral_jwk({**jwk, **over})
    assert exc.value.short_type == "badPublicKey"


@pytest.mark.parametrize("curve", ["P-256", "X25519"])
def test_declared_encryption_use_is_accepted_and_normalised(curve: str) -> None:
    _, jwk = keywrap.generate_ephemeral(curve)
    got = keywrap.validate_ephemeral_jwk({**jwk, "use": "enc", "key_ops": ["deriveBits"],
                                          "alg": "ECDH-ES", "kid": "x" * 20})
    assert got == jwk
