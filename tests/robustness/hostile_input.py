"""Hostile cases of the input classes of issue 15 (items 3, 4, 8, 11, 13): JWS strictness,
bounded JSON, ephemeral keys at finalize, DNS names, profiles and must-staple.

Imported for its side effect: each ``@case`` joins ``hostile.CASES``, so the in-process
suite and the real process over TLS both run them, each asserting status, problem type,
no secret in the answer and an unchanged store (hostile.run_case). The property tests
over the same world are in test_robust_hostile_input.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hostile import (
    JOSE,
    World,
    _ready_download,
    _ready_plain,
    b64j,
    case,
    es256,
    fresh_nonce,
)

from certdepot.acme import crypto, eab, jws, keywrap

# ---- raw requests with a valid signature over whatever text is sent --------------------


def signed_text(protected_text: str, payload_text: str, key: crypto.PrivateKey,
                signature_text: str | None = None) -> dict[str, str]:
    """A JWS whose members are sent exactly as given, signed over that text, so only the
    defect under test (an encoding, a member) can be what the server refuses."""
    sig = es256(key, f"{protected_text}.{payload_text}".encode())
    return {"protected": protected_text, "payload": payload_text,
            "signature": signature_text if signature_text is not None else jws.b64encode(sig)}


async def post_raw(w: World, url: str, body: bytes | str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return await w.http.post(url, content=content, headers={"Content-Type": JOSE})


async def kid_header(w: World, url: str, **extra: Any) -> dict[str, Any]:
    return {"alg": "ES256", "kid": w.a.kid, "url": url, "nonce": await fresh_nonce(w), **extra}


def _order_payload() -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": "x5.a.example.test"}]}


async def _signed_order(w: World, *, protected: str | None = None, payload: str | None = None,
                        extra: dict[str, Any] | None = None) -> httpx.Response:
    url = w.refs["new_order"]
    p = protected if protected is not None else b64j(await kid_header(w, url, **(extra or {})))
    pl = payload if payload is not None else b64j(_order_payload())
    return await post_raw(w, url, json.dumps(signed_text(p, pl, w.a.key)))


# ---- JWS strictness (item 8) --------------------------------------------------------------

@case("jws-crit-unknown-extension", 400, "malformed")
async def _crit(w: World, s: Any) -> httpx.Response:
    return await _signed_order(w, extra={"crit": ["exp"], "exp": 1})


@case("jws-crit-empty-list", 400, "malformed")
async def _crit_empty(w: World, s: Any) -> httpx.Response:
    return await _signed_order(w, extra={"crit": []})


@case("jws-b64-unencoded-payload", 400, "malformed")
async def _b64(w: World, s: Any) -> httpx.Response:
    return await _signed_order(w, extra={"b64": False, "crit": ["b64"]})


def _pad(text: str) -> str:
    """Padded as plain base64url would be (RFC 8555 §6.1: such text must be refused)."""
    return text + ("=" * (-len(text) % 4) or "====")


async def _padded(w: World, member: str) -> httpx.Response:
    p = b64j(await kid_header(w, w.refs["new_order"]))
    pl = b64j(_order_payload())
    p, pl = (_pad(p), pl) if member == "protected" else (p, _pad(pl))
    return await post_raw(w, w.refs["new_order"], json.dumps(signed_text(p, pl, w.a.key)))


@case("jws-protected-padded", 400, "malformed")
async def _prot_padded(w: World, s: Any) -> httpx.Response:
    return await _padded(w, "protected")


@case("jws-payload-padded", 400, "malformed")
async def _pl_padded(w: World, s: Any) -> httpx.Response:
    return await _padded(w, "payload")


@case("jws-signature-padded", 400, "malformed")
async def _sig_padded(w: World, s: Any) -> httpx.Response:
    p = b64j(await kid_header(w, w.refs["new_order"]))
    pl = b64j(_order_payload())
    doc = signed_text(p, pl, w.a.key)
    doc["signature"] = _pad(doc["signature"])
    return await post_raw(w, w.refs["new_order"], json.dumps(doc))


def _set_unused_bits(text: str) -> str:
    """The same bytes with a set unused low bit in the last character (non-canonical)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(text) % 4 == 0:
        text = text[:-1] + "A"  # make room: a text that has unused bits
    pos = alphabet.index(text[-1])
    return text[:-1] + alphabet[pos | 1]


@case("jws-protected-unused-bits-set", 400, "malformed")
async def _prot_bits(w: World, s: Any) -> httpx.Response:
    header = await kid_header(w, w.refs["new_order"])
    p = b64j(header)
    while len(p) % 4 == 0:  # pad the header until its encoding has unused bits
        header["x"] = header.get("x", "") + "a"
        p = b64j(header)
    return await _signed_order(w, protected=_set_unused_bits(p))


@case("jws-payload-whitespace", 400, "malformed")
async def _pl_space(w: World, s: Any) -> httpx.Response:
    pl = b64j(_order_payload())
    return await _signed_order(w, payload=pl[:8] + " " + pl[8:])


@case("jws-payload-standard-alphabet", 400, "malformed")
async def _pl_std(w: World, s: Any) -> httpx.Response:
    raw = json.dumps({**_order_payload(), "pad": "\xff\xfe\xfb"}).encode()
    import base64

    std = base64.b64encode(raw).decode().rstrip("=")
    if "+" not in std and "/" not in std:
        std = std[:-2] + "+/"
    return await _signed_order(w, payload=std)


@case("jws-duplicate-protected-member", 400, "malformed")
async def _dup_prot(w: World, s: Any) -> httpx.Response:
    header = await kid_header(w, w.refs["new_order"])
    text = json.dumps(header)[:-1] + f', "kid": "{w.refs["b_acct"]}"}}'
    return await _signed_order(w, protected=jws.b64encode(text.encode()))


@case("jws-duplicate-payload-member", 400, "malformed")
async def _dup_payload(w: World, s: Any) -> httpx.Response:
    text = ('{"identifiers": [{"type": "dns", "value": "x5.a.example.test"}], '
            '"identifiers": [{"type": "dns", "value": "www.example.test"}]}')
    return await _signed_order(w, payload=jws.b64encode(text.encode()))


@case("jws-duplicate-body-member", 400, "malformed")
async def _dup_body(w: World, s: Any) -> httpx.Response:
    p = b64j(await kid_header(w, w.refs["new_order"]))
    doc = signed_text(p, b64j(_order_payload()), w.a.key)
    text = json.dumps(doc)[:-1] + f', "payload": "{b64j({"identifiers": []})}"}}'
    return await post_raw(w, w.refs["new_order"], text)


@case("jws-duplicate-identifier-member", 400, "malformed")
async def _dup_ident(w: World, s: Any) -> httpx.Response:
    text = ('{"identifiers": [{"type": "dns", "value": "x5.a.example.test", '
            '"value": "www.b.example.test"}]}')
    return await _signed_order(w, payload=jws.b64encode(text.encode()))


@case("jws-nonce-not-base64url", 400, "badNonce")
async def _nonce_b64(w: World, s: Any) -> httpx.Response:
    header = await kid_header(w, w.refs["new_order"])
    header["nonce"] = header["nonce"][:6] + "+/="
    return await _signed_order(w, protected=b64j(header))


@case("jws-jwk-use-enc", 400, "badPublicKey")
async def _jwk_use(w: World, s: Any) -> httpx.Response:
    key = crypto.generate_private_key()
    url = w.refs["new_account"]
    header = {"alg": "ES256", "url": url, "nonce": await fresh_nonce(w),
              "jwk": {**jws.public_jwk(key), "use": "enc"}}
    doc = signed_text(b64j(header), b64j({"termsOfServiceAgreed": True}), key)
    return await post_raw(w, url, json.dumps(doc))


@case("jws-jwk-key-ops-without-verify", 400, "badPublicKey")
async def _jwk_ops(w: World, s: Any) -> httpx.Response:
    key = crypto.generate_private_key()
    url = w.refs["new_account"]
    header = {"alg": "ES256", "url": url, "nonce": await fresh_nonce(w),
              "jwk": {**jws.public_jwk(key), "key_ops": ["encrypt"]}}
    doc = signed_text(b64j(header), b64j({"termsOfServiceAgreed": True}), key)
    return await post_raw(w, url, json.dumps(doc))


@case("jws-jwk-coordinate-padded", 400, "badPublicKey")
async def _jwk_padded(w: World, s: Any) -> httpx.Response:
    key = crypto.generate_private_key()
    url = w.refs["new_account"]
    jwk = jws.public_jwk(key)
    jwk["x"] += "="
    header = {"alg": "ES256", "url": url, "nonce": await fresh_nonce(w), "jwk": jwk}
    doc = signed_text(b64j(header), b64j({"termsOfServiceAgreed": True}), key)
    return await post_raw(w, url, json.dumps(doc))


# ---- bounded JSON (item 3): no 500 for any depth, unauthenticated or signed ------------

@case("json-3000-brackets-unauthenticated", 400, "malformed")
async def _brackets(w: World, s: Any) -> httpx.Response:
    return await post_raw(w, w.refs["new_order"], "[" * 3000)


@case("json-3000-objects-unauthenticated", 400, "malformed")
async def _objects(w: World, s: Any) -> httpx.Response:
    return await post_raw(w, w.refs["new_account"], '{"a":' * 3000)


@case("json-deep-payload-signed", 400, "malformed")
async def _deep_payload(w: World, s: Any) -> httpx.Response:
    return await _signed_order(w, payload=jws.b64encode(b"[" * 3000 + b"]" * 3000))


@case("json-deep-protected", 400, "malformed")
async def _deep_prot(w: World, s: Any) -> httpx.Response:
    return await _signed_order(w, protected=jws.b64encode(b'{"x":' * 3000))


@case("json-nan-in-payload", 400, "malformed")
async def _nan(w: World, s: Any) -> httpx.Response:
    text = '{"identifiers": [{"type": "dns", "value": "x5.a.example.test"}], "n": NaN}'
    return await _signed_order(w, payload=jws.b64encode(text.encode()))


@case("json-body-utf16", 400, "malformed")
async def _utf16(w: World, s: Any) -> httpx.Response:
    p = b64j(await kid_header(w, w.refs["new_order"]))
    doc = signed_text(p, b64j(_order_payload()), w.a.key)
    return await post_raw(w, w.refs["new_order"], json.dumps(doc).encode("utf-16"))


@case("json-body-bom", 400, "malformed")
async def _bom(w: World, s: Any) -> httpx.Response:
    p = b64j(await kid_header(w, w.refs["new_order"]))
    doc = signed_text(p, b64j(_order_payload()), w.a.key)
    return await post_raw(w, w.refs["new_order"], b"\xef\xbb\xbf" + json.dumps(doc).encode())


def _eab_with(w: World, key: crypto.PrivateKey, protected_text: str) -> dict[str, str]:
    import hashlib
    import hmac

    payload = b64j(jws.public_jwk(key))
    p = jws.b64encode(protected_text.encode())
    mac = hmac.new(jws.b64decode(w.creds["team-a"].hmac_key), f"{p}.{payload}".encode(),
                   hashlib.sha256).digest()
    return {"protected": p, "payload": payload, "signature": jws.b64encode(mac)}


async def _new_account_with(w: World, binding: Any, key: crypto.PrivateKey) -> httpx.Response:
    c = w.client(key)
    return await c.post(w.refs["new_account"], {"termsOfServiceAgreed": True,
                                                "externalAccountBinding": binding},
                        use_jwk=True)


@case("eab-deeply-nested-header", 400, "malformed")
async def _eab_deep(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account_with(w, _eab_with(w, k, "[" * 3000), k)


@case("eab-duplicate-header-member", 400, "malformed")
async def _eab_dup(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    cr = w.creds["team-a"]
    text = (f'{{"alg": "HS256", "kid": "{cr.kid}", "url": "{w.refs["new_account"]}", '
            f'"kid": "kid-other"}}')
    return await _new_account_with(w, _eab_with(w, k, text), k)


@case("eab-crit", 400, "malformed")
async def _eab_crit(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    cr = w.creds["team-a"]
    text = json.dumps({"alg": "HS256", "kid": cr.kid, "url": w.refs["new_account"],
                       "crit": ["exp"], "exp": 1})
    return await _new_account_with(w, _eab_with(w, k, text), k)


@case("eab-padded-signature", 400, "malformed")
async def _eab_pad(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    binding = eab.create_eab(k, w.creds["team-a"].kid, w.creds["team-a"].hmac_key,
                             w.refs["new_account"])
    binding["signature"] = _pad(binding["signature"])
    return await _new_account_with(w, binding, k)


@case("keychange-old-key-not-a-jwk", 400, "malformed")
async def _kc_oldkey(w: World, s: Any) -> httpx.Response:
    new = crypto.generate_private_key()
    inner = jws.sign({"account": w.a.kid, "oldKey": {"kty": "none"}}, new,
                     url=w.refs["key_change"])
    return await w.a.post(w.refs["key_change"], json.dumps(inner).encode())


# ---- the ephemeral key at finalize (item 3) ----------------------------------------------

_LOW_ORDER_X25519 = [
    "00" * 32, "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    # the same points, non-canonically encoded (>= p, or with the top bit set)
    "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f",
    "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
]


def _x25519(hex_x: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "X25519", "x": jws.b64encode(bytes.fromhex(hex_x))}


def _ephemeral_case(name: str, jwk: Any) -> None:
    async def send(w: World, s: Any) -> httpx.Response:
        return await w.a.post(s, {"ephemeral-jwk": jwk})
    case(f"ephemeral-{name}", 400, "badPublicKey", prepare=_ready_download)(send)


for _i, _hex in enumerate(_LOW_ORDER_X25519):
    _ephemeral_case(f"x25519-low-order-{_i}", _x25519(_hex))

_P256 = keywrap.generate_ephemeral("P-256")[1]
_X = keywrap.generate_ephemeral("X25519")[1]
_P384 = keywrap.generate_ephemeral("P-384")[1]
for _name, _jwk in [
    ("use-sig", {**_P256, "use": "sig"}),
    ("x25519-use-sig", {**_X, "use": "sig"}),
    ("key-ops-sign", {**_P256, "key_ops": ["sign"]}),
    ("key-ops-empty", {**_X, "key_ops": []}),
    ("key-ops-derive-and-sign", {**_P256, "key_ops": ["deriveKey", "sign"]}),
    ("key-ops-not-a-list", {**_P256, "key_ops": "deriveKey"}),
    ("alg-es256", {**_P256, "alg": "ES256"}),
    ("kty-ec-crv-x25519", {**_X, "kty": "EC"}),
    ("kty-okp-crv-p256", {**_P256, "kty": "OKP"}),
    ("x-padded", {**_P256, "x": _P256["x"] + "="}),
    ("p384-x-on-p256", {**_P256, "x": _P384["x"]}),
    ("x25519-with-y", {**_X, "y": _P256["y"]}),
    ("x25519-short", {**_X, "x": _X["x"][:20]}),
]:
    _ephemeral_case(_name, _jwk)


# ---- names (item 4) -----------------------------------------------------------------------

def _name_case(name: str, value: str, *, delegation: bool = False) -> None:
    async def send(w: World, s: Any) -> httpx.Response:
        extra = {"delegation": w.refs["a_deleg"]} if delegation else {}
        return await w.a.new_order([value], **extra)
    case(f"name-{name}", 400, "rejectedIdentifier")(send)


for _name, _value in [
    ("root-dot", "."), ("empty", ""), ("two-dots", ".."),
    ("literal-pattern-text", "cdn-*.a.example.test"),
    ("wildcard-in-the-middle", "x.*.a.example.test"),
    ("wildcard-partial-label", "x*.a.example.test"),
    ("double-wildcard", "*.*.a.example.test"),
    ("kelvin-sign", "\u212a.a.example.test"),
    ("fullwidth-letter", "\uff58.a.example.test"),
    ("empty-label", "x..a.example.test"),
    ("leading-dot", ".x.a.example.test"),
    ("two-trailing-dots", "x.a.example.test.."),
    ("underscore", "x_y.a.example.test"),
    ("leading-hyphen", "-x.a.example.test"),
    ("invalid-a-label", "xn--abc.a.example.test"),
    ("reserved-hyphens", "ab--c.a.example.test"),
    ("ipv4-as-dns", "127.0.0.1"),
    ("overlong-name", ("a" * 60 + ".") * 4 + "a.example.test"),
    ("zero-width-joiner", "x\u200dy.a.example.test"),
]:
    _name_case(_name, _value)

_name_case("delegation-literal-pattern-text", "cdn-*.example.test", delegation=True)
_name_case("delegation-kelvin-sign", "cdn-\u212a.example.test", delegation=True)


@case("name-download-upper-case-dot-still-other-set", 400, "rejectedIdentifier")
async def _dl_names(w: World, s: Any) -> httpx.Response:
    # Normalised (EXAMPLE.test. is example.test) but still not the whole name set of "web".
    return await w.a.new_order(["EXAMPLE.test."], download=True)


@case("csr-san-not-a-dns-name", 400, "rejectedIdentifier", prepare=_ready_plain)
async def _csr_bad_san(w: World, s: Any) -> httpx.Response:
    url, name = s.split()
    der = crypto.build_csr(crypto.generate_private_key(), [name, "x..a.example.test"])
    return await w.a.post(url, {"csr": jws.b64encode(der)})


# ---- profiles and must-staple (item 13) ---------------------------------------------------

@case("order-profile-not-advertised", 400, "invalidProfile")
async def _profile(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x6.a.example.test"], profile="tlsserver-forever")


@case("download-order-profile-not-advertised", 400, "invalidProfile")
async def _dl_profile(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["example.test", "www.example.test"], download=True,
                               profile="classic")


@case("delegation-order-profile-not-advertised", 400, "invalidProfile")
async def _dg_profile(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["cdn-7.example.test"], delegation=w.refs["a_deleg"],
                               profile="classic")


@case("csr-must-staple", 400, "badCSR", prepare=_ready_plain)
async def _must_staple(w: World, s: Any) -> httpx.Response:
    url, name = s.split()
    key = crypto.generate_private_key()
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .add_extension(x509.TLSFeature([x509.TLSFeatureType.status_request]),
                          critical=False)
           .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return await w.a.post(url, {"csr": jws.b64encode(
        csr.public_bytes(serialization.Encoding.DER))})


async def _ready_delegated(w: World) -> str:
    r = await w.a.new_order(["cdn-8.example.test"], delegation=w.refs["a_deleg"])
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


@case("delegation-csr-must-staple", 400, "badCSR", prepare=_ready_delegated)
async def _dg_must_staple(w: World, s: Any) -> httpx.Response:
    from hostile import _raw_csr

    key = crypto.generate_private_key()
    der = _raw_csr(key, ["cdn-8.example.test"], extensions=[
        (x509.TLSFeature([x509.TLSFeatureType.status_request]), False)])
    return await w.a.post(s, {"csr": jws.b64encode(der)})
