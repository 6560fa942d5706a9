"""RFC 9115 CSR template matching and template-driven CSR building."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from certdepot.acme import crypto, csr_template
from certdepot.acme.problems import AcmeProblem

TEMPLATE: dict[str, Any] = {
    "keyTypes": [
        {
            "PublicKeyType": "id-ecPublicKey",
            "namedCurve": "secp256r1",
            "SignatureType": "ecdsa-with-SHA256",
        },
        {
            "PublicKeyType": "rsaEncryption",
            "PublicKeyLength": 2048,
            "SignatureType": "sha256WithRSAEncryption",
        },
    ],
    "subject": {"country": "CA", "organization": "**", "commonName": "*"},
    "extensions": {
        "subjectAltName": {"DNS": ["cdn.example.test", "**"]},
        "keyUsage": ["digitalSignature"],
        "extendedKeyUsage": ["serverAuth"],
    },
}
EC = crypto.generate_private_key("ec-p256")


def _fields(problems: list[AcmeProblem]) -> list[str]:
    return [p.extra["field"] for p in problems]


def test_template_is_valid_and_built_csr_matches() -> None:
    assert csr_template.validate_template(TEMPLATE) == []
    der = csr_template.build_csr_for_template(
        TEMPLATE, EC, ["edge1.example.test"], {"organization": "CDN Inc"}
    )
    assert csr_template.match_csr(TEMPLATE, der) == []
    csr_template.check_csr(TEMPLATE, der)
    names = crypto.csr_dns_names(crypto.load_csr(der))
    assert names == ["edge1.example.test", "cdn.example.test"]


def test_rsa_key_matches_its_key_type_and_other_sizes_do_not() -> None:
    rsa = crypto.generate_private_key("rsa-2048")
    der = csr_template.build_csr_for_template(
        TEMPLATE, rsa, ["e.example.test"], {"organization": "O"}
    )
    assert csr_template.match_csr(TEMPLATE, der) == []
    with pytest.raises(csr_template.TemplateError, match="does not allow key"):
        csr_template.build_csr_for_template(
            TEMPLATE, crypto.generate_private_key("ec-p384"), ["e.test"]
        )
    p384 = crypto.build_csr(
        crypto.generate_private_key("ec-p384"),
        ["e.example.test", "cdn.example.test"],
        subject={"country": "CA", "organization": "O"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth"],
    )
    assert _fields(csr_template.match_csr(TEMPLATE, p384)) == ["keyTypes"]


def test_required_subject_value_missing_is_reported() -> None:
    with pytest.raises(csr_template.TemplateError, match=r"subject\.organization"):
        csr_template.build_csr_for_template(TEMPLATE, EC, ["e.test"])
    der = crypto.build_csr(
        EC,
        ["e.example.test", "cdn.example.test"],
        subject={"country": "US"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth"],
    )
    problems = csr_template.match_csr(TEMPLATE, der)
    assert sorted(_fields(problems)) == ["subject.country", "subject.organization"]
    assert all(p.short_type == "badCSR" for p in problems)


def test_names_usages_and_extra_extensions() -> None:
    strict = copy.deepcopy(TEMPLATE)
    strict["extensions"]["subjectAltName"] = {"dNSName": ["cdn.example.test"]}
    der = crypto.build_csr(
        EC,
        ["cdn.example.test", "evil.example.test"],
        subject={"country": "CA", "organization": "O", "locality": "X"},
        key_usage=["digitalSignature", "keyEncipherment"],
    )
    problems = csr_template.match_csr(strict, der)
    assert sorted(_fields(problems)) == [
        "extensions.extendedKeyUsage",
        "extensions.keyUsage",
        "extensions.subjectAltName.DNS",
        "subject.locality",
    ]
    with pytest.raises(AcmeProblem) as exc:
        csr_template.check_csr(strict, der)
    assert exc.value.short_type == "badCSR" and len(exc.value.subproblems) == 4
    assert exc.value.to_json()["subproblems"][0]["type"].endswith("badCSR")


def test_required_chosen_name_and_missing_literal() -> None:
    der = crypto.build_csr(
        EC,
        ["other.example.test"],
        subject={"country": "CA", "organization": "O"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth"],
    )
    problems = csr_template.match_csr(TEMPLATE, der)
    assert [p.detail for p in problems] == [
        "extensions.subjectAltName.DNS: must include 'cdn.example.test'"
    ]
    only_literal = crypto.build_csr(
        EC,
        ["cdn.example.test"],
        subject={"country": "CA", "organization": "O"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth"],
    )
    assert "choosing" in csr_template.match_csr(TEMPLATE, only_literal)[0].detail


def test_validate_template_reports_structure() -> None:
    assert csr_template.validate_template([]) == ["template is not a JSON object"]
    errors = csr_template.validate_template(
        {
            "keyTypes": [{"PublicKeyType": "dsa"}],
            "subject": {"nick": "x"},
            "extensions": {"foo": 1},
            "bar": 1,
        }
    )
    assert len(errors) == 5


# Shaped like RFC 9115's full example: RSA or P-521, subject with required values,
# DNS + URI + Email SANs, key usages (names of our own choosing).
FULL: dict[str, Any] = {
    "keyTypes": [
        {
            "PublicKeyType": "rsaEncryption",
            "PublicKeyLength": 2048,
            "SignatureType": "sha256WithRSAEncryption",
        },
        {
            "PublicKeyType": "id-ecPublicKey",
            "namedCurve": "secp521r1",
            "SignatureType": "ecdsa-with-SHA512",
        },
    ],
    "subject": {"country": "NL", "locality": "**", "commonName": "**"},
    "extensions": {
        "subjectAltName": {
            "DNS": ["edge.ndc.example.test"],
            "URI": ["sip:edge.ndc.example.test"],
            "Email": ["ops@ndc.example.test"],
        },
        "keyUsage": ["digitalSignature"],
        "extendedKeyUsage": ["serverAuth", "1.3.6.1.5.5.7.3.2"],
    },
}


def test_full_template_with_email_uri_and_oid_eku() -> None:
    assert csr_template.validate_template(FULL) == []
    key = crypto.generate_private_key("ec-p521")
    der = csr_template.build_csr_for_template(
        FULL, key, [], {"locality": "Utrecht", "commonName": "edge.ndc.example.test"}
    )
    assert csr_template.match_csr(FULL, der) == []
    # clientAuth by name is the same EKU as the OID in the template.
    by_name = crypto.build_csr(
        key,
        ["edge.ndc.example.test"],
        subject={"country": "NL", "locality": "U", "commonName": "x"},
        key_usage=["digitalSignature"],
        extended_key_usage=["clientAuth", "serverAuth"],
        emails=["ops@ndc.example.test"],
        uris=["sip:edge.ndc.example.test"],
        signature_hash="sha512",
    )
    assert csr_template.match_csr(FULL, by_name) == []


def test_email_and_uri_must_match_exactly() -> None:
    key = crypto.generate_private_key("ec-p521")
    der = crypto.build_csr(
        key,
        ["edge.ndc.example.test"],
        subject={"country": "NL", "locality": "U", "commonName": "x"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth"],
        emails=["evil@example.test"],
        signature_hash="sha512",
    )
    fields = sorted(_fields(csr_template.match_csr(FULL, der)))
    assert fields == [
        "extensions.extendedKeyUsage",
        "extensions.subjectAltName.Email",
        "extensions.subjectAltName.URI",
    ]


def test_signature_type_is_enforced() -> None:
    key = crypto.generate_private_key("ec-p521")
    der = csr_template.build_csr_for_template(FULL, key, [], {"locality": "U", "commonName": "x"})
    assert csr_template.match_csr(FULL, der) == []
    sha256 = crypto.build_csr(
        key,
        ["edge.ndc.example.test"],
        subject={"country": "NL", "locality": "U", "commonName": "x"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth", "clientAuth"],
        emails=["ops@ndc.example.test"],
        uris=["sip:edge.ndc.example.test"],
        signature_hash="sha256",
    )
    assert _fields(csr_template.match_csr(FULL, sha256)) == ["keyTypes"]


@pytest.mark.parametrize(
    "bad",
    [
        {"subjectAltName": {"Email": ["**"]}},
        {"subjectAltName": {"IP": ["1.2.3.4"]}},
        {"subjectAltName": {}},
        {"subjectAltName": {"DNS": ["a.test"]}, "extendedKeyUsage": ["1.2.x"]},
    ],
)
def test_validate_template_rejects_bad_extensions(bad: dict[str, Any]) -> None:
    template = {"keyTypes": FULL["keyTypes"], "extensions": bad}
    assert csr_template.validate_template(template), bad


def test_a_template_is_judged_once_per_content(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON Schema runs once per template content, not per CSR; a changed template is
    judged afresh, and the answers are the same as uncached ones."""
    from certdepot.acme import templateschema

    calls: list[object] = []
    real = templateschema.validate

    def counting(template: object) -> list[str]:
        calls.append(template)
        return real(template)

    monkeypatch.setattr(templateschema, "validate", counting)
    monkeypatch.setattr(csr_template, "_JUDGED", {})
    template = copy.deepcopy(dict(csr_template.P256_TLS_SERVER))
    for _ in range(3):
        assert csr_template.validate_template(copy.deepcopy(template)) == []
    assert len(calls) == 1
    broken = {**template, "keyTypes": "none"}
    assert csr_template.validate_template(broken) == real(broken) != []
    assert csr_template.validate_template(broken) == real(broken)
    assert len(calls) == 2
