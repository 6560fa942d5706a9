"""JWS signing and the server-side verification rules of RFC 8555 §6.2-6.5."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from certdepot.acme import crypto, jws
from certdepot.acme.problems import AcmeProblem

URL = "https://acme.test/new-order"
KINDS = ["ec-p256", "ec-p384", "ec-p521", "rsa-2048", "ed25519"]


@pytest.fixture(scope="module", params=KINDS)
def key(request: pytest.FixtureRequest) -> crypto.PrivateKey:
    return crypto.generate_private_key(request.param)


def _reencode(body: dict[str, str], **header_changes: object) -> dict[str, str]:
    protected = json.loads(jws.b64decode(body["protected"]))
    for k, v in header_changes.items():
        if v is None:
            protected.pop(k, None)
        else:
            protected[k] = v
    return {**body, "protected": jws.b64encode(json.dumps(protected).encode())}


def test_sign_then_verify_roundtrip_with_jwk(key: crypto.PrivateKey) -> None:
    body = jws.sign({"hello": "world"}, key, url=URL, nonce="n-1")
    protected, payload, jwk = jws.verify_jws(body, url=URL)
    assert protected["alg"] == jws.alg_for_key(key)
    assert protected["nonce"] == "n-1"
    assert json.loads(payload) == {"hello": "world"}
    assert jwk == jws.public_jwk(key)


def test_kid_requests_resolve_the_account_key(key: crypto.PrivateKey) -> None:
    body = jws.sign(None, key, url=URL, nonce="n", kid="https://acme.test/acct/1")
    seen: list[str] = []

    def lookup(kid: str) -> crypto.PublicKey:
        seen.append(kid)
        return key.public_key()

    _, payload, jwk = jws.verify_jws(body, url=URL, key_for_kid=lookup)
    assert payload == b"" and jwk is None and seen == ["https://acme.test/acct/1"]
    parsed = jws.parse_jws(json.dumps(body))
    assert parsed.is_post_as_get and parsed.payload_json() is None


def test_unknown_kid_is_account_does_not_exist() -> None:
    key = crypto.generate_private_key()
    body = jws.sign({}, key, url=URL, nonce="n", kid="https://acme.test/acct/404")
    with pytest.raises(AcmeProblem) as exc:
        jws.verify_jws(body, url=URL, key_for_kid=lambda kid: None)
    assert exc.value.short_type == "accountDoesNotExist"


def test_tampered_payload_fails_as_malformed(key: crypto.PrivateKey) -> None:
    body = jws.sign({"a": 1}, key, url=URL, nonce="n")
    body["payload"] = jws.b64encode(b'{"a":2}')
    with pytest.raises(AcmeProblem) as exc:
        jws.verify_jws(body, url=URL)
    assert exc.value.short_type == "malformed"


def test_signature_by_other_key_fails() -> None:
    signer, other = crypto.generate_private_key(), crypto.generate_private_key()
    body = jws.sign({}, signer, url=URL, nonce="n", kid="k")
    with pytest.raises(AcmeProblem, match="signature"):
        jws.verify_jws(body, url=URL, key_for_kid=lambda kid: other.public_key())


@pytest.mark.parametrize("alg", ["none", "HS256", "RS384", None])
def test_disallowed_algorithms_are_bad_signature_algorithm(alg: str | None) -> None:
    key = crypto.generate_private_key()
    body = _reencode(jws.sign({}, key, url=URL, nonce="n"), alg=alg)
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(body)
    assert exc.value.short_type == "badSignatureAlgorithm"
    assert "ES256" in exc.value.extra["algorithms"]


def test_alg_must_fit_the_key() -> None:
    key = crypto.generate_private_key("ec-p256")
    body = _reencode(jws.sign({}, key, url=URL, nonce="n"), alg="ES384")
    with pytest.raises(AcmeProblem, match="signature"):
        jws.verify_jws(body, url=URL)


def test_server_allow_list_is_enforced() -> None:
    key = crypto.generate_private_key("rsa-2048")
    body = jws.sign({}, key, url=URL, nonce="n")
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(body, algorithms=("ES256",))
    assert exc.value.short_type == "badSignatureAlgorithm"


def test_exactly_one_of_kid_and_jwk() -> None:
    key = crypto.generate_private_key()
    both = _reencode(jws.sign({}, key, url=URL, nonce="n"), kid="k")
    neither = _reencode(jws.sign({}, key, url=URL, nonce="n"), jwk=None)
    for body in (both, neither):
        with pytest.raises(AcmeProblem, match="exactly one of kid and jwk") as exc:
            jws.parse_jws(body)
        assert exc.value.short_type == "malformed"


def test_url_header_required_and_must_match() -> None:
    key = crypto.generate_private_key()
    with pytest.raises(AcmeProblem, match="url") as exc:
        jws.parse_jws(_reencode(jws.sign({}, key, url=URL, nonce="n"), url=None))
    assert exc.value.short_type == "malformed"
    with pytest.raises(AcmeProblem) as exc:
        jws.verify_jws(jws.sign({}, key, url=URL, nonce="n"), url="https://acme.test/other")
    assert exc.value.short_type == "unauthorized"


def test_missing_nonce_is_bad_nonce_unless_not_required() -> None:
    key = crypto.generate_private_key()
    body = jws.sign({}, key, url=URL)
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(body)
    assert exc.value.short_type == "badNonce"
    assert jws.parse_jws(body, require_nonce=False).nonce is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        b'{"protected": "e30", "payload": ""}',
        b'{"protected": "!!", "payload": "", "signature": ""}',
        b'{"signatures": [], "payload": ""}',
        b'{"protected": "e30", "header": {}, "payload": "", "signature": ""}',
        b'{"protected": "W10", "payload": "", "signature": ""}',
    ],
)
def test_structurally_broken_bodies_are_malformed(raw: bytes) -> None:
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(raw)
    assert exc.value.short_type == "malformed"


def test_payload_must_be_a_json_object() -> None:
    key = crypto.generate_private_key()
    parsed = jws.parse_jws(jws.sign(b"[1,2]", key, url=URL, nonce="n"))
    with pytest.raises(AcmeProblem, match="object"):
        parsed.payload_json()


def test_jwk_with_private_members_is_refused() -> None:
    key = crypto.generate_private_key()
    jwk = {**jws.public_jwk(key), "d": "AAAA"}
    with pytest.raises(AcmeProblem) as exc:
        jws.public_key_from_jwk(jwk)
    assert exc.value.short_type == "badPublicKey"


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"},
        {"kty": "oct", "k": "AA"},
    ],
)
def test_unusable_jwks_are_bad_public_key(jwk: dict[str, str]) -> None:
    with pytest.raises(AcmeProblem) as exc:
        jws.public_key_from_jwk(jwk)
    assert exc.value.short_type == "badPublicKey"


def test_rfc7638_thumbprint_example() -> None:
    # RFC 7638 §3.1 example key and its published thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
            "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
            "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
            "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jws.thumbprint_b64(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_public_key_from_jwk_roundtrips(key: crypto.PrivateKey) -> None:
    jwk = jws.public_jwk(key)
    assert jws.public_jwk(jws.public_key_from_jwk(jwk)) == jwk


def test_b64decode_rejects_standard_alphabet() -> None:
    with pytest.raises(ValueError):
        jws.b64decode("a+b/")
    assert jws.b64decode(jws.b64encode(b"\xff\xfe")) == b"\xff\xfe"


def test_ec_keys_from_the_same_jwk_are_built_once_and_bad_points_always_refused() -> None:
    key = crypto.generate_private_key("ec-p256")
    doc = jws.public_jwk(key)
    first = jws.public_key_from_jwk(doc)
    assert jws.public_key_from_jwk(dict(doc)) is first  # cached per (crv, x, y)
    assert isinstance(first, ec.EllipticCurvePublicKey)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert first.public_numbers() == key.public_key().public_numbers()
    off_curve = {**doc, "y": jws.b64encode((int.from_bytes(jws.b64decode(doc["y"]), "big") ^ 1)
                                            .to_bytes(32, "big"))}
    for _ in range(2):  # a refusal is not cached as a key
        with pytest.raises(AcmeProblem) as err:
            jws.public_key_from_jwk(off_curve)
        assert err.value.short_type == "badPublicKey"
