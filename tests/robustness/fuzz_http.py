"""Raw-HTTP fuzzing of the repository's endpoints (hypothesis): what is generated, how it
is sent, and what every answer must be.

Every request is written byte for byte on its own TLS connection (no HTTP client between
the fuzzer and the server to tidy headers up), with a header block and a body drawn from:
- arbitrary bytes; arbitrary JSON; JWS-shaped objects with fuzzed protected headers and
  garbage signatures (the unauthenticated surface);
- properly signed JWS (the world's team-a account, or a fresh jwk for newAccount) with a
  fresh nonce and the right url, whose payload is fuzzed from the members the endpoints
  read (identifiers, csr, ephemeral-jwk, certificate, reason, ...): the handlers' surface;
- extra header lines with arbitrary names and values, and fuzzed Content-Type values.

The answer must never be a 5xx, and every 4xx must be an ACME problem document
(``application/problem+json`` with an ``urn:ietf:params:acme:error:`` type and the status).

Deeply nested JSON (up to 5,000 levels, as the body, inside the protected header and as
the payload) is drawn too: a body of 3,000 ``[`` once raised RecursionError (a 500) in
acme/jws.py and acme/eab.py; the bounded-depth parser (acme/jsonparse.py) answers it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hostile import es256
from hypothesis import strategies as st

from certdepot.acme import crypto, jws

ACME_NS = "urn:ietf:params:acme:error:"


@dataclass(frozen=True)
class FuzzTarget:
    host: str
    port: int
    ssl: ssl.SSLContext
    base: str  # https://host:port
    kid: str
    key: crypto.PrivateKey


@dataclass(frozen=True)
class FuzzEndpoint:
    name: str
    path: str
    method: str = "POST"
    uses_jwk: bool = False  # newAccount: signed with a jwk, not a kid


@dataclass
class Tally:
    """Answers seen, by endpoint and status (for the report in docs/reliability.md)."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)

    def total(self) -> int:
        return sum(self.statuses.values())


# ---- sending ----------------------------------------------------------------------------

def exchange(t: FuzzTarget, data: bytes, timeout: float = 20.0) -> bytes:
    with socket.create_connection((t.host, t.port), timeout=timeout) as raw, \
            t.ssl.wrap_socket(raw, server_hostname=t.host) as s:
        # Refused early (a header block too large)? Read the answer all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def request_bytes(t: FuzzTarget, method: str, path: str, body: bytes,
                  headers: list[tuple[bytes, bytes]]) -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), f"Host: {t.host}:{t.port}".encode()]
    head += [n + b": " + v for n, v in headers]
    head += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def fresh_nonce(t: FuzzTarget) -> str:
    reply = exchange(t, request_bytes(t, "HEAD", "/acme/new-nonce", b"", []))
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"replay-nonce":
            return value.strip().decode()
    raise AssertionError(f"no Replay-Nonce: {reply[:200]!r}")


def check_answer(reply: bytes, what: str) -> tuple[int, str]:
    """The status and problem type ("" for a success); asserts no 5xx and a problem
    document for every 4xx."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 "), f"{what}: no HTTP answer: {reply[:200]!r}"
    status = int(lines[0].split()[1])
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        headers = {n.strip().lower(): v.strip() for n, _, v in
                   (line.partition(b":") for line in lines[1:])}
        ctype = headers.get(b"content-type", b"")
        assert ctype.startswith(b"application/problem+json"), f"{what}: {status} {ctype!r}"
        doc = json.loads(body[:int(headers.get(b"content-length", len(body)))])
        assert str(doc.get("type", "")).startswith(ACME_NS), f"{what}: {doc}"
        assert doc.get("status") == status, f"{what}: {doc}"
        return status, str(doc["type"]).removeprefix(ACME_NS)
    return status, ""


# ---- strategies -------------------------------------------------------------------------

json_leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
             | st.floats(allow_nan=False) | st.text(max_size=40))
json_values = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=10)
deep_json = st.tuples(st.integers(30, 5000), st.sampled_from(['[', '{"a":']),
                      st.booleans()).map(
    lambda t: t[1] * t[0] + ("1" + ("]" if t[1] == "[" else "}") * t[0] if t[2] else ""))
b64_junk = st.binary(max_size=300).map(jws.b64encode) | st.text(max_size=60)

identifier = st.fixed_dictionaries({
    "type": st.sampled_from(["dns", "ip", "DNS", "email", ""]) | st.text(max_size=5),
    "value": st.sampled_from(["x5.a.example.test", "*.a.example.test", "example.test",
                              "www.example.test", ".", "", "a..b", "cdn-1.example.test",
                              "k\u212a.a.example.test", "x" * 70 + ".a.example.test"])
             | st.text(max_size=30)})
ephemeral_jwk = st.fixed_dictionaries({
    "kty": st.sampled_from(["EC", "OKP", "RSA", "oct", ""]),
    "crv": st.sampled_from(["P-256", "P-384", "X25519", "Ed25519", "secp256k1"]),
    "x": b64_junk, "y": b64_junk}, optional={
    "d": b64_junk, "use": st.sampled_from(["enc", "sig"]) | st.text(max_size=4),
    "key_ops": st.lists(st.sampled_from(["deriveKey", "sign", "encrypt"]), max_size=3),
    "alg": st.text(max_size=10)})
# The members the endpoints read, with values of the right shape or any.
MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "identifiers": st.lists(identifier, max_size=8) | json_values,
    "csr": b64_junk | json_values,
    "ephemeral-jwk": ephemeral_jwk | json_values,
    "certificate": b64_junk | json_values,
    "reason": st.integers(-5, 20) | json_values,
    "status": st.sampled_from(["valid", "revoked", "canceled", "pending"]) | json_values,
    "contact": st.lists(st.sampled_from(["mailto:a@example.test", "tel:1", "mailto:,"])
                        | st.text(max_size=20), max_size=3) | json_values,
    "profile": st.text(max_size=80) | json_values,
    "replaces": st.text(max_size=120) | json_values,
    "download": st.booleans() | json_values,
    "delegation": st.text(max_size=60) | json_values,
    "notBefore": st.sampled_from(["2020-01-01T00:00:00Z", "not a date", ""]) | json_values,
    "notAfter": st.sampled_from(["2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z"])
                | json_values,
    "auto-renewal": st.dictionaries(st.sampled_from(
        ["end-date", "lifetime", "start-date", "lifetime-adjust", "allow-certificate-get"]),
        json_values, max_size=3) | json_values,
    "externalAccountBinding": st.dictionaries(st.sampled_from(
        ["protected", "payload", "signature"]), b64_junk | json_values, max_size=3),
    "onlyReturnExisting": st.booleans() | json_values,
    "termsOfServiceAgreed": st.booleans() | json_values,
    "account": st.text(max_size=60) | json_values,
    "oldKey": ephemeral_jwk | json_values,
}
payloads = (st.none() | json_values
            | st.dictionaries(st.sampled_from(sorted(MEMBERS)), st.just(None), max_size=5)
            .flatmap(lambda keys: st.fixed_dictionaries({k: MEMBERS[k] for k in keys})))

protected = st.dictionaries(
    st.sampled_from(["alg", "kid", "jwk", "url", "nonce", "crit", "b64", "typ", "x5c"])
    | st.text(max_size=6),
    st.sampled_from(["ES256", "none", "HS256", "RS256", "EdDSA", "", None]) | json_values,
    max_size=6)

token_chars = st.sampled_from(list(b"abcdefghijklmnopqrstuvwxyz-ABCXYZ0123456789_!#$%&'*+.^`|~"))
header_names = st.lists(token_chars, min_size=1, max_size=20).map(bytes) \
    .filter(lambda n: n.lower() not in (b"content-length", b"transfer-encoding", b"host",
                                        b"connection", b"expect"))
# Mostly printable values (answered by the application), sometimes any byte but CR/LF
# (answered by the parser): framing is not what is fuzzed.
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
raw_values = st.binary(max_size=200).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))
def _mostly(common: st.SearchStrategy[bytes], rare: st.SearchStrategy[bytes], tenths: int
            ) -> st.SearchStrategy[bytes]:
    """``common`` in ``tenths`` of ten draws, else ``rare`` (one_of would weigh them alike,
    and most requests would then stop at the parser or the Content-Type check)."""
    return st.integers(0, 9).flatmap(lambda i: common if i < tenths else rare)


header_values = _mostly(printable.map(str.encode), raw_values, 9)
content_types = _mostly(st.just(b"application/jose+json"), st.sampled_from(
    [b"application/jose+json; charset=utf-8", b"APPLICATION/JOSE+JSON", b"application/json",
     b"application/x-www-form-urlencoded", b"", b";"]) | header_values, 8)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    out = [(b"Content-Type", draw(content_types))]
    out += draw(st.lists(st.tuples(header_names, header_values), max_size=3))
    return out


@st.composite
def bodies(draw: st.DrawFn, t: FuzzTarget, ep: FuzzEndpoint) -> bytes:
    """One request body: unauthenticated shapes, or a properly signed request."""
    kind = draw(st.sampled_from(["bytes", "json", "deep", "jws-shaped", "signed", "signed",
                                 "signed"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "deep":
        return draw(deep_json).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    url = t.base + ep.path
    if kind == "jws-shaped":
        prot = {"alg": "ES256", "url": url, "nonce": "AAAA", "kid": t.kid,
                **draw(protected)}
        doc: dict[str, Any] = {"protected": jws.b64encode(json.dumps(prot).encode()),
                               "payload": draw(b64_junk), "signature": draw(b64_junk)}
        doc.update(draw(st.dictionaries(st.sampled_from(
            ["protected", "payload", "signature", "header", "signatures"]),
            b64_junk | json_values, max_size=2)))
        return json.dumps(doc).encode()
    key = crypto.generate_private_key() if ep.uses_jwk else t.key
    nonce = fresh_nonce(t)
    if draw(st.integers(0, 9)) == 0:  # a properly signed, deeply nested payload
        return _signed_raw(draw(deep_json).encode(), key, url, nonce,
                           None if ep.uses_jwk else t.kid)
    signed = jws.sign(draw(payloads), key, url=url, nonce=nonce,
                      kid=None if ep.uses_jwk else t.kid)
    return json.dumps(signed).encode()


def _signed_raw(payload: bytes, key: crypto.PrivateKey, url: str, nonce: str,
                kid: str | None) -> bytes:
    """A JWS over payload bytes that need not be valid JSON (jws.sign takes objects)."""
    template = jws.sign({}, key, url=url, nonce=nonce, kid=kid)
    p64 = jws.b64encode(payload)
    signing_input = f"{template['protected']}.{p64}".encode()
    return json.dumps({"protected": template["protected"], "payload": p64,
                       "signature": jws.b64encode(es256(key, signing_input))}).encode()


def path_of(t: FuzzTarget, ep: FuzzEndpoint, suffix: str) -> str:
    """The endpoint's path, with a fuzzed last segment for the GET resource."""
    if ep.method == "GET":
        return ep.path + quote(suffix, safe="")
    return ep.path
