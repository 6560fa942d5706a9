"""Key authorizations and challenge values (RFC 8555 §8, RFC 8737)."""

from __future__ import annotations

import base64
import hashlib

from certdepot.acme import challenges, jws

# RFC 7638's example JWK (thumbprint NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs).
JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
        "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
        "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
}
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEYAUTH = TOKEN + ".NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_key_authorization_and_http01() -> None:
    assert challenges.key_authorization(TOKEN, JWK) == KEYAUTH
    assert challenges.http01_body(TOKEN, JWK) == KEYAUTH
    assert challenges.http01_path(TOKEN) == f"/.well-known/acme-challenge/{TOKEN}"


def test_dns01() -> None:
    expected = (
        base64.urlsafe_b64encode(hashlib.sha256(KEYAUTH.encode()).digest()).rstrip(b"=").decode()
    )
    assert challenges.dns01_txt_value(TOKEN, JWK) == expected
    assert challenges.dns01_name("*.Example.test.") == "_acme-challenge.Example.test"
    assert challenges.dns01_name("www.example.test") == "_acme-challenge.www.example.test"


def test_tlsalpn01_extension_is_der_octet_string() -> None:
    value = challenges.tlsalpn01_extension_value(TOKEN, JWK)
    assert value[:2] == b"\x04\x20" and value[2:] == hashlib.sha256(KEYAUTH.encode()).digest()
    ext = challenges.tlsalpn01_extension(TOKEN, JWK)
    assert ext.oid.dotted_string == "1.3.6.1.5.5.7.1.31" and ext.value == value


def test_token_shape() -> None:
    assert challenges.valid_token(TOKEN)
    assert not challenges.valid_token("short")
    assert not challenges.valid_token(TOKEN[:-1] + "=")
    assert jws.thumbprint_b64(JWK) in KEYAUTH
