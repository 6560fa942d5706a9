"""The bounded, strict JSON parser every request body goes through (acme/jsonparse.py), and
the JWS / EAB strictness built on it (RFC 7515, RFC 8555 §6.1-6.2)."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certdepot.acme import crypto, eab, jsonparse, jws
from certdepot.acme.problems import AcmeProblem

KEY = crypto.generate_private_key()
URL = "https://repo.test/acme/new-order"


@pytest.mark.parametrize("text", ["[" * 3000, "{\"a\":" * 3000, "[" * 33 + "]" * 33,
                                  "[{" * 17 + "}]" * 17])
def test_deep_nesting_is_a_json_error_not_recursion(text: str) -> None:
    with pytest.raises(jsonparse.JsonError, match="deeper"):
        jsonparse.loads(text)


def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    assert jsonparse.loads("[" * 32 + "]" * 32, max_depth=32) is not None
    with pytest.raises(jsonparse.JsonError):
        jsonparse.loads("[" * 33 + "]" * 33, max_depth=32)
    assert jsonparse.loads(json.dumps(["[[[[" * 100]), max_depth=2) == ["[[[[" * 100]
    assert jsonparse.loads(json.dumps(["\\\"[[" * 50]), max_depth=1) == ["\\\"[[" * 50]


@pytest.mark.parametrize("text", [
    '"' + '\\"' * 30000, '"' + '\\"' * 30000 + "\\", '"a' + "[" * 40000,
    '["' * 20000])
def test_pathological_strings_scan_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(jsonparse.JsonError):
        jsonparse.loads(text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(("data", "why"), [
    ('{"a":1,"a":2}', "duplicate"), ('{"x":{"b":1,"b":1}}', "duplicate"),
    ("[NaN]", "NaN"), ("[Infinity]", "Infinity"), ("[-Infinity]", "Infinity"),
    (b"\xef\xbb\xbf{}", "byte-order"), (b"\xff\xfe{\x00}\x00", "UTF-8"),
    ('"\xff', "not JSON"), ("{}" + " " * 10, None), ("", "not JSON"), ("{} {}", "not JSON"),
])
def test_strictness(data: str | bytes, why: str | None) -> None:
    if why is None:
        assert jsonparse.loads(data) == {}
        return
    with pytest.raises(jsonparse.JsonError, match=why):
        jsonparse.loads(data)


def test_size_bound() -> None:
    with pytest.raises(jsonparse.JsonError, match="larger"):
        jsonparse.loads(b"[" + b"1," * 100 + b"1]", max_bytes=100)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_input_is_a_value_or_a_json_error(data: bytes | str) -> None:
    with contextlib.suppress(jsonparse.JsonError):
        jsonparse.loads(data)


# ---- JWS strictness -------------------------------------------------------------------

def _signed(**extra: object) -> dict[str, str]:
    return jws.sign({"identifiers": []}, KEY, url=URL, nonce="bm9uY2U", kid="https://k/1",
                    extra_protected=extra or None)


def test_the_parser_takes_a_signed_request() -> None:
    parsed = jws.parse_jws(json.dumps(_signed()))
    parsed.verify(KEY.public_key())
    assert parsed.payload_json() == {"identifiers": []}


@pytest.mark.parametrize("extra", [{"crit": ["exp"], "exp": 1}, {"crit": []},
                                   {"b64": False, "crit": ["b64"]}, {"b64": True}])
def test_crit_and_b64_are_refused(extra: dict[str, object]) -> None:
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(json.dumps(_signed(**extra)))
    assert exc.value.short_type == "malformed"


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
@pytest.mark.parametrize("junk", ["=", "==", " ", "\n", "+", "/", "."])
def test_non_canonical_base64url_is_refused(member: str, junk: str) -> None:
    doc = _signed()
    doc[member] = doc[member] + junk
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(json.dumps(doc))
    assert exc.value.short_type == "malformed"


def test_unused_trailing_bits_are_refused() -> None:
    # "QQ" is b"A"; "QR" decodes to the same byte with a set unused bit.
    assert jws.b64decode("QQ") == b"A"
    for text in ("QR", "QX", "QUF", "A", "QQ==", "Q Q"):
        with pytest.raises(ValueError):
            jws.b64decode(text)


def _with_header_text(header_json: str, payload_json: str = '{"a":1}') -> str:
    p = jws.b64encode(header_json.encode())
    pl = jws.b64encode(payload_json.encode())
    return json.dumps({"protected": p, "payload": pl, "signature": jws.b64encode(b"x" * 64)})


def test_duplicate_members_in_header_body_and_payload_are_refused() -> None:
    good = '{"alg":"ES256","url":"' + URL + '","nonce":"bm9uY2U","kid":"k"}'
    dup_header = good[:-1] + ',"kid":"other"}'
    with pytest.raises(AcmeProblem, match="duplicate"):
        jws.parse_jws(_with_header_text(dup_header))
    parsed = jws.parse_jws(_with_header_text(good, '{"a":1,"a":2}'))
    with pytest.raises(AcmeProblem, match="duplicate"):
        parsed.payload_json()
    body = _with_header_text(good)
    with pytest.raises(AcmeProblem, match="duplicate"):
        jws.parse_jws(body[:-1] + ', "payload": ""}')


def test_nonce_not_base64url_is_bad_nonce() -> None:
    doc = jws.sign({}, KEY, url=URL, nonce="a b", kid="k")
    with pytest.raises(AcmeProblem) as exc:
        jws.parse_jws(json.dumps(doc))
    assert exc.value.short_type == "badNonce"


@pytest.mark.parametrize("over", [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "sign"},
                                  {"key_ops": ["verify", "verify"]}, {"p": "AQ"}, {"k": "AQ"}])
def test_account_jwk_usage_must_allow_signatures(over: dict[str, object]) -> None:
    jwk = {**jws.public_jwk(KEY), **over}
    with pytest.raises(AcmeProblem) as exc:
        jws.public_key_from_jwk(jwk)
    assert exc.value.short_type == "badPublicKey"


def test_canonical_jwk_keeps_only_thumbprint_members() -> None:
    jwk = {**jws.public_jwk(KEY), "use": "sig", "x-junk": "A" * 100}
    assert jws.canonical_jwk(jwk) == jws.public_jwk(KEY)


def test_eab_deep_or_duplicate_json_is_malformed() -> None:
    for protected in ("[" * 3000, '{"alg":"HS256","alg":"HS256"}'):
        binding = {"protected": jws.b64encode(protected.encode()), "payload": "e30",
                   "signature": "AA"}
        with pytest.raises(AcmeProblem) as exc:
            eab.verify_eab(binding, account_jwk=jws.public_jwk(KEY), url=URL,
                           hmac_key_for=lambda kid: b"k")
        assert exc.value.short_type == "malformed"
