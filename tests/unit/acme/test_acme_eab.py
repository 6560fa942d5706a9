"""External Account Binding create/verify."""

from __future__ import annotations

import pytest

from certdepot.acme import crypto, eab, jws
from certdepot.acme.problems import AcmeProblem

URL = "https://acme.test/new-account"
HMAC = jws.b64encode(b"0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_roundtrip(alg: str) -> None:
    key = crypto.generate_private_key()
    binding = eab.create_eab(key, "kid-1", HMAC, URL, alg=alg)
    assert (
        eab.verify_eab(
            binding,
            account_jwk=jws.public_jwk(key),
            url=URL,
            hmac_key_for={"kid-1": jws.b64decode(HMAC)}.get,
        )
        == "kid-1"
    )


def _verify(binding: object, key: crypto.PrivateKey, url: str = URL) -> str:
    return eab.verify_eab(
        binding,
        account_jwk=jws.public_jwk(key),
        url=url,
        hmac_key_for={"kid-1": jws.b64decode(HMAC)}.get,
    )


def test_wrong_mac_key_unknown_kid_wrong_url_other_key_are_unauthorized() -> None:
    key = crypto.generate_private_key()
    cases = [
        eab.create_eab(key, "kid-1", jws.b64encode(b"wrong key bytes"), URL),
        eab.create_eab(key, "kid-2", HMAC, URL),
        eab.create_eab(key, "kid-1", HMAC, "https://acme.test/elsewhere"),
        eab.create_eab(crypto.generate_private_key(), "kid-1", HMAC, URL),
    ]
    for binding in cases:
        with pytest.raises(AcmeProblem) as exc:
            _verify(binding, key)
        assert exc.value.short_type == "unauthorized"


@pytest.mark.parametrize("binding", [None, "x", {}, {"protected": "e30", "payload": "e30"}])
def test_structure_errors_are_malformed(binding: object) -> None:
    with pytest.raises(AcmeProblem) as exc:
        _verify(binding, crypto.generate_private_key())
    assert exc.value.short_type == "malformed"


def test_asymmetric_alg_is_refused() -> None:
    key = crypto.generate_private_key()
    binding = jws.sign(jws.public_jwk(key), key, url=URL, kid="kid-1")  # ES256, not a MAC
    with pytest.raises(AcmeProblem) as exc:
        _verify(binding, key)
    assert exc.value.short_type == "badSignatureAlgorithm"


def test_bad_inputs_on_create() -> None:
    key = crypto.generate_private_key()
    with pytest.raises(ValueError):
        eab.create_eab(key, "k", HMAC, URL, alg="RS256")
    with pytest.raises(ValueError):
        eab.create_eab(key, "k", "", URL)
