"""The one DNS-name normaliser (acme/dnsname.py): IDNA 2008, lower-case ASCII, no trailing
dot, and everything that is not a DNS name refused (issue 15 item 4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certdepot.acme import dnsname
from certdepot.repository import policy


@pytest.mark.parametrize(("raw", "canonical"), [
    ("Example.COM.", "example.com"), ("*.A.example", "*.a.example"),
    ("bücher.example", "xn--bcher-kva.example"), ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("под.рф", "xn--d1atc.xn--p1ai"), ("a-b.c1", "a-b.c1"), ("x" * 63 + ".t", "x" * 63 + ".t"),
])
def test_canonical_forms(raw: str, canonical: str) -> None:
    assert dnsname.normalize(raw) == canonical
    assert dnsname.normalize(canonical) == canonical  # idempotent


@pytest.mark.parametrize("raw", [
    "", ".", "..", "a..b", "a.example..", ".a.example", "*", "*.", "**.a", "a.*.b",
    "cdn-*.a.example", "*x.a.example", "x*.a", "\u212aelvin.example", "BÜCHER.example",
    "\uff25xample.com", "xn--abc.example", "ab--c.example", "-a.b", "a-.b", "a_b.example",
    "x y.a", "x\x00.a", "127.0.0.1", "a.123", "x" * 64 + ".t", "a." * 127 + "com",
    "x" * 5000, "a\u200db.example", "a/b.example", "a@b.example",
])
def test_not_names(raw: str) -> None:
    with pytest.raises(dnsname.InvalidName):
        dnsname.normalize(raw)


@pytest.mark.parametrize("value", [None, 5, ["a.example"], {"v": 1}, b"a.example"])
def test_non_strings(value: object) -> None:
    with pytest.raises(dnsname.InvalidName):
        dnsname.normalize(value)


def test_wildcard_may_be_forbidden() -> None:
    with pytest.raises(dnsname.InvalidName):
        dnsname.normalize("*.a.example", wildcard=False)


def test_patterns() -> None:
    assert dnsname.normalize_pattern("CDN-*.Example.test.") == "cdn-*.example.test"
    assert dnsname.normalize_pattern("*.bücher.example") == "*.xn--bcher-kva.example"
    for bad in ("c_*.x", "a..*", "", ".", "x.-a"):
        with pytest.raises(dnsname.InvalidName):
            dnsname.normalize_pattern(bad)


def test_literal_pattern_text_is_not_a_name_that_matches_it() -> None:
    assert policy.name_matches("cdn-1.a.example", "cdn-*.a.example")
    assert not policy.name_matches("cdn-*.a.example", "cdn-*.a.example")
    assert policy.name_matches("*.a.example", "*.a.example")
    assert not policy.name_matches("\u212a.a.example", "*.a.example")
    assert not policy.name_matches("k.a.example", "\u212a.a.example")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalize_is_total_and_idempotent(text: str) -> None:
    try:
        name = dnsname.normalize(text)
    except dnsname.InvalidName:
        return
    assert name == dnsname.normalize(name)
    assert name.isascii() and name == name.lower() and not name.endswith(".")
    assert len(name) <= dnsname.MAX_NAME
    assert "*" not in name.removeprefix("*.")
