"""Property tests (hypothesis): the JWS parser, the CSR-template matcher, the name-pattern
policy and the configuration loader fail only with their own clear errors, and no matcher
accepts a name its pattern excludes (checked against an independent oracle)."""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from certdepot.acme import crypto, csr_template, jws
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import delegation, policy
from certdepot.repository.config import ConfigError, Delegation, load_config, parse_config

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
KEY = crypto.generate_private_key()
OTHER = crypto.generate_private_key()
URL = "https://repo.test/acme/new-order"

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=12)
json_values = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)


def b64j(obj: Any) -> str:
    return jws.b64encode(json.dumps(obj).encode())


# ---- JWS parser ------------------------------------------------------------------------

header_keys = st.sampled_from(["alg", "kid", "jwk", "url", "nonce", "crit", "b64", "x5c"])
header_values = st.sampled_from(["ES256", "none", "HS256", "RS256", "EdDSA", URL, "", 0,
                                 None]) | json_values
headers = st.dictionaries(header_keys, header_values, max_size=6)
members = st.sampled_from(["protected", "payload", "signature", "header", "signatures"])


@FAST
@given(doc=st.dictionaries(members, st.text(max_size=30) | json_values, max_size=5))
def test_parse_arbitrary_members(doc: dict[str, Any]) -> None:
    for body in (json.dumps(doc).encode(), doc):
        try:
            parsed = jws.parse_jws(body)
        except AcmeProblem:
            continue
        with contextlib.suppress(AcmeProblem):
            parsed.verify(KEY.public_key())


@FAST
@given(header=headers, payload=json_values)
def test_parse_arbitrary_headers(header: dict[str, Any], payload: Any) -> None:
    doc = {"protected": b64j(header), "payload": b64j(payload),
           "signature": jws.b64encode(b"\x00" * 64)}
    try:
        parsed = jws.parse_jws(json.dumps(doc))
    except AcmeProblem as p:
        assert p.short_type in ("malformed", "badSignatureAlgorithm", "badNonce")
        return
    # Whatever got through the structural checks still cannot verify a zero signature.
    try:
        key = parsed.jwk_key or KEY.public_key()
    except (AcmeProblem, ValueError):
        return
    try:
        parsed.verify(key)
        raise AssertionError("a zero signature verified")
    except AcmeProblem as p:
        assert p.short_type == "malformed"
    try:
        parsed.payload_json()
    except AcmeProblem as p:
        assert p.short_type == "malformed"


@FAST
@given(body=st.binary(max_size=200))
def test_parse_arbitrary_bytes(body: bytes) -> None:
    with contextlib.suppress(AcmeProblem):
        jws.parse_jws(body)


@FAST
@given(payload=st.dictionaries(st.text(max_size=6), json_leaf, max_size=4),
       part=st.sampled_from(["protected", "payload", "signature"]),
       index=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=5))
def test_any_tampering_fails_verification(payload: dict[str, Any], part: str, index: int,
                                          bit: int) -> None:
    signed = jws.sign(payload, KEY, url=URL, nonce="n1", kid="https://repo.test/acme/acct/1")
    text = signed[part]
    assume(text)
    i = index % len(text)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    pos = alphabet.index(text[i])
    repl = alphabet[pos ^ (1 << bit)] if pos ^ (1 << bit) < 64 else alphabet[(pos + 1) % 64]
    tampered = dict(signed)
    tampered[part] = text[:i] + repl + text[i + 1:]
    try:
        parsed = jws.parse_jws(json.dumps(tampered))
        if jws.b64decode(tampered[part]) == jws.b64decode(text):
            return  # only the unused low bits of the last character changed
        parsed.verify(KEY.public_key())
    except AcmeProblem:
        return
    raise AssertionError(f"tampered {part} still verifies")


def test_signature_by_other_key_never_verifies() -> None:
    for n in range(50):
        signed = jws.sign({"n": n}, OTHER, url=URL, nonce=str(n), kid="k")
        try:
            jws.parse_jws(json.dumps(signed)).verify(KEY.public_key())
        except AcmeProblem as p:
            assert p.short_type == "malformed"
        else:
            raise AssertionError("another key's signature verified")


# ---- name patterns ----------------------------------------------------------------------

label = st.text(alphabet="ab1-", min_size=1, max_size=4)
odd_label = label | st.sampled_from(["*", "A", "_x", "é", "", "a" * 64, "xn--a", "-a", "a-"])
names = st.lists(odd_label, min_size=1, max_size=4).map(".".join)
pattern_label = st.text(alphabet="ab1-*", min_size=1, max_size=5)
patterns = st.lists(pattern_label | label, min_size=1, max_size=4).map(".".join)

_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _labels(text: str) -> list[str]:
    # ASCII-only lowering: str.lower() would fold U+212A KELVIN SIGN into "k".
    t = "".join(c.lower() if c.isascii() else c for c in text)
    return (t[:-1] if t.endswith(".") else t).split(".")


def _host_label(label: str) -> str | None:
    """The label's A-label form, or None: LDH, at most 63, no reserved '??--'."""
    label = {"é": "xn--9ca"}.get(label, label)  # the one U-label the strategy draws
    ok = _LDH.fullmatch(label) and (label[2:4] != "--" or label == "xn--9ca")
    return label if ok else None


def pattern_valid(pattern: str) -> bool:
    pl = _labels(pattern)
    for x in pl:
        if "*" in x:
            if not re.fullmatch(r"[a-z0-9*](?:[a-z0-9*-]*[a-z0-9*])?", x):
                return False
        elif _host_label(x) is None:
            return False
    return "*" in pl[-1] or not pl[-1].isdigit()


def oracle(name: str, pattern: str) -> bool:
    """Independent reading of the documented rule (issue 15 item 4): only a valid DNS name
    matches anything (LDH or IDNA labels, '*' only as the whole leftmost label, a
    non-numeric last label); a wildcard name matches only the pattern that spells it;
    otherwise the name matches when it has as many labels as the pattern and each pattern
    label matches its name label with '*' standing for any run of [a-z0-9-] (never a dot).
    An invalid pattern (empty or non-LDH label without '*') matches nothing."""
    nl, pl = _labels(name), _labels(pattern)
    wild = nl[0] == "*" and len(nl) > 1
    rest = [_host_label(x) for x in (nl[1:] if wild else nl)]
    if any(x is None for x in rest) or nl[-1].isdigit():
        return False
    if not pattern_valid(pattern):
        return False
    if wild:
        return nl == pl
    if len(rest) != len(pl):
        return False
    for a, b in zip(rest, pl, strict=True):
        rx = "[a-z0-9-]*".join(re.escape(x) for x in b.split("*"))
        if not re.fullmatch(rx, a or ""):
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(name=names, pattern=patterns)
@example(name="a.evil.example.test", pattern="*.example.test")
@example(name="cdn-a.example.test.evil", pattern="cdn-*.example.test")
@example(name="*.example.test", pattern="*.example.test")
@example(name="x.example.test", pattern="*.*.test")
@example(name="cdn-*.example.test", pattern="cdn-*.example.test")
@example(name=".", pattern="*")
@example(name="\u212aelvin.example.test", pattern="*.example.test")
def test_name_pattern_matches_oracle(name: str, pattern: str) -> None:
    got = policy.name_matches(name, pattern)
    assert got == oracle(name, pattern), (name, pattern, got)
    if got and "*" not in pattern:
        assert _labels(name) == _labels(pattern) or "é" in name
    if got:
        assert len(_labels(name)) == len(_labels(pattern))


@FAST
@given(name=st.text(max_size=30), pattern=st.text(max_size=30))
def test_name_pattern_total(name: str, pattern: str) -> None:
    assert isinstance(policy.name_matches(name, pattern), bool)


# ---- CSR template matcher --------------------------------------------------------------

# Template literals must be DNS names (RFC 9115 §4.1, checked since issue 15): LDH labels.
ldh_label = st.from_regex(r"[ab1](?:[ab1-]{0,2}[ab1])?", fullmatch=True)
dns_names = st.lists(ldh_label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "test"]))
san_entries = st.lists(dns_names | st.sampled_from(["*", "**"]), min_size=1, max_size=4)
EC = {"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
      "SignatureType": "ecdsa-with-SHA256"}


@settings(max_examples=150, deadline=None)
@given(san=san_entries, csr_names=st.lists(dns_names, min_size=1, max_size=4, unique=True))
def test_template_dns_never_accepts_excluded_names(san: list[str], csr_names: list[str]
                                                   ) -> None:
    template = {"keyTypes": [EC], "extensions": {"subjectAltName": {"DNS": san}}}
    der = crypto.build_csr(KEY, csr_names)
    problems = csr_template.match_csr(template, der)
    literals = {s for s in san if s not in ("*", "**")}
    wild = "*" in san or "**" in san
    if not problems:
        assert literals <= set(csr_names), "a required literal name is missing"
        if not wild:
            assert set(csr_names) <= literals, "a name outside the template was accepted"
        if "**" in san and "*" not in san:
            assert set(csr_names) - literals, "** requires a name of the client's choosing"
    else:
        assert all(p.short_type == "badCSR" for p in problems)


@settings(max_examples=150, deadline=None)
@given(template=json_values | st.dictionaries(
    st.sampled_from(["keyTypes", "subject", "extensions", "x"]), json_values, max_size=3))
def test_template_matcher_total(template: Any) -> None:
    der = crypto.build_csr(KEY, ["a.test"])
    try:
        problems = csr_template.match_csr(template, der)
    except csr_template.TemplateError:
        return
    assert all(isinstance(p, AcmeProblem) and p.short_type == "badCSR" for p in problems)


@settings(max_examples=300, deadline=None)
@given(pats=st.lists(patterns, max_size=3), literals=st.lists(dns_names, max_size=2),
       name=names)
def test_delegation_name_allowed_only_by_pattern_or_literal(
        pats: list[str], literals: list[str], name: str) -> None:
    try:
        d = Delegation(name="d", issuer="local", name_patterns=pats, csr_template={
            "keyTypes": [EC], "extensions": {"subjectAltName": {"DNS": [*literals, "**"]}}})
    except ValidationError:
        # The configuration refuses a pattern that is not one (issue 15 item 4).
        assert not all(pattern_valid(p) for p in pats)
        return
    if delegation.name_allowed(d, name.lower()):
        assert name.lower() in literals or any(oracle(name.lower(), p) for p in pats)


# ---- configuration loader ---------------------------------------------------------------

VALID: dict[str, Any] = {
    "baseUrl": "https://repo.test",
    "listeners": {"http": {"address": "127.0.0.1:0"}},
    "storage": {"url": "sqlite://"},
    "keyEncryptionKey": {"env": "CERTDEPOT_TEST_KEK"},
    "issuers": [{"name": "local", "type": "local-ca", "lifetime": "2d"}],
    "defaultIssuer": "local",
    "certificates": [{"name": "web", "dnsNames": ["www.example.test"], "issuer": "local"}],
    "tenants": [{"name": "t", "download": ["web"], "issue": ["*.t.example.test"],
                 "delegations": [{"name": "d", "issuer": "local", "csrTemplate": {
                     "keyTypes": [EC], "extensions": {"subjectAltName": {"DNS": ["**"]}}}}]}],
}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(VALID)[1:]


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)  # type: ignore[index,call-overload]
    return copy


def test_valid_config_parses() -> None:
    parse_config(VALID)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(ALL_PATHS), value=json_values)
def test_config_mutation_gives_clear_error(path: tuple[Any, ...], value: Any) -> None:
    doc = _replace(VALID, path, value)
    try:
        parse_config(doc, "repository.yaml")
    except ConfigError as exc:
        text = str(exc)
        assert text.startswith("invalid configuration"), text
        assert "repository.yaml: " in text, text
        assert "Traceback" not in text


@FAST
@given(doc=json_values)
def test_config_arbitrary_document(doc: Any) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(doc)


@FAST
@given(text=st.text(max_size=200) | st.builds(yaml.safe_dump, json_values))
def test_config_file_arbitrary_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "repository.yaml"
        p.write_text(text)
        try:
            load_config(p)
        except ConfigError as exc:
            assert str(p) in str(exc)
