"""RFC 9115 CSR templates are validated with the RFC's own JSON Schema (jsonschema) and the
few checks the schema leaves to the recipient (issue 15 item 11)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from certdepot.acme import csr_template, templateschema

ROOT = Path(__file__).resolve().parents[3]
EC = {"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
      "SignatureType": "ecdsa-with-SHA256"}
RSA = {"PublicKeyType": "rsaEncryption", "PublicKeyLength": 2048,
       "SignatureType": "sha256WithRSAEncryption"}
GOOD: dict[str, Any] = {
    "keyTypes": [EC, RSA],
    "subject": {"commonName": "*"},
    "extensions": {"subjectAltName": {"DNS": ["cdn.example.test", "**"]},
                   "keyUsage": ["digitalSignature"], "extendedKeyUsage": ["serverAuth"]},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()


def test_the_schema_is_the_rfcs_and_loads() -> None:
    schema = templateschema.rfc_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == "JSON Schema for the STAR Delegation CSR template"
    assert templateschema.validate(GOOD) == []


@pytest.mark.parametrize(("path", "value", "why"), [
    ("keyTypes.0.namedCurve", _DELETE, "namedCurve"),          # EC key type without curve
    ("keyTypes.1.PublicKeyLength", _DELETE, "PublicKeyLength"),  # RSA without length
    ("keyTypes.0.SignatureType", _DELETE, "SignatureType"),
    ("keyTypes.0.SignatureType", "ecdsa-with-SHA1", "SignatureType"),
    ("keyTypes.1.SignatureType", "md5WithRSAEncryption", "SignatureType"),
    ("keyTypes.0.namedCurve", "secp256k1", "namedCurve"),
    ("keyTypes.0.PublicKeyType", "dsa", "none of the kinds"),
    ("keyTypes", [], "keyTypes"),
    ("keyTypes", _DELETE, "keyTypes"),
    ("subject", {}, "subject"),                                # empty DN
    ("subject", {"nick": "x"}, "nick"),
    ("extensions.subjectAltName", {}, "subjectAltName"),       # empty SAN
    ("extensions.subjectAltName.DNS", [], "DNS"),
    ("extensions.subjectAltName", {"Email": []}, "Email"),
    ("extensions.subjectAltName", {"URI": []}, "URI"),
    ("extensions.subjectAltName", {"IP": ["127.0.0.1"]}, "IP"),
    ("extensions.keyUsage", [], "keyUsage"),                   # empty keyUsage
    ("extensions.keyUsage", ["signEverything"], "keyUsage"),
    ("extensions.extendedKeyUsage", [], "extendedKeyUsage"),
    ("extensions.extendedKeyUsage", ["1.2.x"], "extendedKeyUsage"),
    ("extensions.extendedKeyUsage", ["01.2"], "extendedKeyUsage"),
    ("extensions.subjectAltName", _DELETE, "subjectAltName"),
    ("extensions.foo", 1, "foo"),
    ("bar", 1, "bar"),
])
def test_templates_the_rfc_schema_rejects(path: str, value: Any, why: str) -> None:
    errors = csr_template.validate_template(_with(path, value))
    assert errors and any(why in e for e in errors), errors


@pytest.mark.parametrize(("path", "value", "why"), [
    ("extensions.subjectAltName.DNS", ["a..example.test"], "DNS.0"),
    ("extensions.subjectAltName.DNS", ["cdn-*.example.test"], "DNS.0"),
    ("extensions.subjectAltName.URI", ["not a uri"], "URI.0"),
    ("extensions.subjectAltName.URI", ["**"], "URI.0"),
    ("keyTypes.1.PublicKeyLength", 1024, "PublicKeyLength"),
    ("keyTypes.1.PublicKeyLength", 100_000, "PublicKeyLength"),
    ("extensions.keyUsage", ["digitalSignature", "encipherOnly"], "keyAgreement"),
])
def test_what_the_schema_cannot_say(path: str, value: Any, why: str) -> None:
    errors = csr_template.validate_template(_with(path, value))
    assert errors and any(why in e for e in errors), errors


def test_certdepot_extensions_ed25519_and_dnsname_alias() -> None:
    ed = _with("keyTypes", [{"PublicKeyType": "Ed25519"}])
    assert templateschema.validate(ed) == []
    alias = _with("extensions.subjectAltName", {"dNSName": ["**"]})
    assert templateschema.validate(alias) == []
    both = _with("extensions.subjectAltName", {"dNSName": ["**"], "DNS": ["**"]})
    assert templateschema.validate(both)


def test_the_projects_own_templates_validate() -> None:
    assert csr_template.validate_template(csr_template.P256_TLS_SERVER) == []
    found = 0
    for rel in ("tests/e2e/values-kind.yaml", "docs/operations.md", "docs/delegation.md",
                "examples", "charts"):
        base = ROOT / rel
        files = [base] if base.is_file() else sorted(base.rglob("*.y*ml")) if base.exists() \
            else []
        for f in files:
            for template in _templates_in(f.read_text()):
                found += 1
                assert csr_template.validate_template(template) == [], (f, template)
    assert found >= 2, "no csrTemplate found in the project's examples"


def _templates_in(text: str) -> list[dict[str, Any]]:
    """Every csrTemplate mapping in a YAML document or in the YAML blocks of a Markdown
    file (Helm templates and unparsable blocks are skipped)."""
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S) if "```" in text else [text]
    out: list[dict[str, Any]] = []
    for block in blocks:
        try:
            docs = list(yaml.safe_load_all(block))
        except yaml.YAMLError:
            continue
        for doc in docs:
            out += _walk(doc)
    return out


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        here = [node["csrTemplate"]] if isinstance(node.get("csrTemplate"), dict) else []
        return here + [t for v in node.values() for t in _walk(v)]
    if isinstance(node, list):
        return [t for v in node for t in _walk(v)]
    return []
