"""RFC 9115 §4 CSR templates: check a CSR against one, and build a CSR that satisfies one.

A template is JSON::

    {"keyTypes": [{"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
                   "SignatureType": "ecdsa-with-SHA256"},
                  {"PublicKeyType": "rsaEncryption", "PublicKeyLength": 2048,
                   "SignatureType": "sha256WithRSAEncryption"}],
     "subject": {"country": "CA", "organization": "**", "commonName": "*"},
     "extensions": {"subjectAltName": {"DNS": ["cdn.example.com", "**"]},
                    "keyUsage": ["digitalSignature"], "extendedKeyUsage": ["serverAuth"]}}

Values: a literal must appear exactly; ``"**"`` = required, the client chooses the value;
``"*"`` = optional, any value. ``subjectAltName`` holds ``DNS``, ``Email`` and ``URI`` lists
(``dNSName`` is accepted as an alias of ``DNS``). In the ``DNS`` list, literal names must all
be present; a ``"**"`` entry requires at least one name of the client's choosing and ``"*"``
permits any number; without either, no other names are allowed. ``Email``/``URI`` are literal
sets. ``keyUsage``/``extendedKeyUsage`` are literal sets the CSR must carry exactly (an
extended key usage by name or dotted OID). ``keyTypes`` constrain the public key and the
CSR's signature algorithm. Anything the template does not mention (subject attributes,
extensions) must not be in the CSR. ``PublicKeyType: "Ed25519"`` is a certdepot extension.

API (pure):

- ``match_csr(template, csr) -> list[AcmeProblem]``: one ``badCSR`` subproblem per mismatched
  field, detail prefixed with the field path; empty when the CSR fits. ``TemplateError``
  when the template itself is invalid (a configuration error, not the client's).
- ``check_csr(template, csr)``: raises ``AcmeProblem(badCSR, subproblems=...)`` when not.
- ``validate_template(template) -> list[str]``: errors of a template itself, by RFC 9115's
  JSON Schema and the checks it leaves to the recipient (acme/templateschema.py).
- ``build_csr_for_template(template, key, dns_names, subject=None) -> bytes`` (DER):
  ``TemplateError`` if the key type is not allowed or a required value is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from certdepot.acme.crypto import (
    EXTENDED_KEY_USAGES,
    SUBJECT_ATTRIBUTES,
    PrivateKey,
    PublicKey,
    build_csr,
    eku_oid,
    load_csr,
)
from certdepot.acme.problems import AcmeProblem

REQUIRED = "**"
OPTIONAL = "*"

#: What certdepot's operator sends for a DelegatedCertificate with an ECDSA P-256 key and
#: the default usages: any DNS names, an optional common name, a TLS server's key usages.
#: A delegation with this template accepts those CSRs (demo, benchmark, tests).
P256_TLS_SERVER: Mapping[str, Any] = {
    "keyTypes": [
        {
            "PublicKeyType": "id-ecPublicKey",
            "namedCurve": "secp256r1",
            "SignatureType": "ecdsa-with-SHA256",
        }
    ],
    "subject": {"commonName": OPTIONAL},
    "extensions": {
        "subjectAltName": {"DNS": [REQUIRED]},
        "keyUsage": ["digitalSignature"],
        "extendedKeyUsage": ["serverAuth"],
    },
}

_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.ED25519: "Ed25519",
}
_SIGNATURE_HASH = {
    "sha256WithRSAEncryption": "sha256",
    "sha384WithRSAEncryption": "sha384",
    "sha512WithRSAEncryption": "sha512",
    "ecdsa-with-SHA256": "sha256",
    "ecdsa-with-SHA384": "sha384",
    "ecdsa-with-SHA512": "sha512",
}
_EKU_NAMES = {oid.dotted_string: name for name, oid in EXTENDED_KEY_USAGES.items()}
_ATTR_NAMES = {oid: name for name, oid in SUBJECT_ATTRIBUTES.items()}
_SAN_KEYS = ("DNS", "dNSName")
_SAN_KINDS = ("DNS", "Email", "URI")
_HANDLED_EXTENSIONS = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "subjectAltName",
    ExtensionOID.KEY_USAGE: "keyUsage",
    ExtensionOID.EXTENDED_KEY_USAGE: "extendedKeyUsage",
}


def _eku_dotted(name: str) -> str:
    try:
        return eku_oid(name).dotted_string
    except ValueError:
        return name


class TemplateError(ValueError):
    """A CSR cannot be built for this template with these inputs."""


def _bad(path: str, detail: str) -> AcmeProblem:
    return AcmeProblem("badCSR", f"{path}: {detail}", extra={"field": path})


def _key_description(key: PublicKey | PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return {"PublicKeyType": "rsaEncryption", "PublicKeyLength": key.key_size}
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {"PublicKeyType": "id-ecPublicKey", "namedCurve": key.curve.name}
    return {"PublicKeyType": "Ed25519"}


def _key_type_matches(
    entry: Mapping[str, Any], desc: Mapping[str, Any], signature: str | None
) -> bool:
    if entry.get("PublicKeyType") != desc.get("PublicKeyType"):
        return False
    if desc["PublicKeyType"] == "rsaEncryption" and entry.get("PublicKeyLength") not in (
        None,
        desc.get("PublicKeyLength"),
    ):
        return False
    if desc["PublicKeyType"] == "id-ecPublicKey" and entry.get("namedCurve") != desc.get(
        "namedCurve"
    ):
        return False
    wanted_sig = entry.get("SignatureType")
    return signature is None or wanted_sig in (None, signature)


def _san_template(extensions: Mapping[str, Any]) -> list[str] | None:
    """The template's DNS list (``DNS``, or the alias ``dNSName``), if any."""
    return _san_lists(extensions).get("DNS")


def _san_lists(extensions: Any) -> dict[str, list[str]]:
    san = extensions.get("subjectAltName") if isinstance(extensions, Mapping) else None
    if not isinstance(san, Mapping):
        return {}
    lists: dict[str, list[str]] = {}
    for key, value in san.items():
        kind = "DNS" if key in _SAN_KEYS else key
        if kind in _SAN_KINDS and isinstance(value, list):
            lists[kind] = [str(v) for v in value]
    return lists


def validate_template(template: Any) -> list[str]:
    """Problems of a template itself (empty list when usable): RFC 9115's JSON Schema,
    then what the schema cannot say (acme/templateschema.py).

    Judged once per template content: a delegation's template is checked with every CSR
    built or received for it, and the JSON Schema validation cost more than the rest of
    the check (an operator's DelegatedCertificates, a repository's delegated orders)."""
    from certdepot.acme import templateschema

    try:
        content = json.dumps(template, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return templateschema.validate(template)  # not JSON: judged each time (it is wrong)
    known = _JUDGED.get(content)
    if known is None:
        if len(_JUDGED) >= _JUDGED_MAX:
            _JUDGED.clear()
        known = _JUDGED[content] = tuple(templateschema.validate(template))
    return list(known)


#: validate_template's answers by template content (canonical JSON); bounded.
_JUDGED: dict[str, tuple[str, ...]] = {}
_JUDGED_MAX = 256


def _match_subject(
    template: Mapping[str, Any], csr: x509.CertificateSigningRequest
) -> list[AcmeProblem]:
    problems: list[AcmeProblem] = []
    wanted = template.get("subject") or {}
    present: dict[str, list[str]] = {}
    for attr in csr.subject:
        name = _ATTR_NAMES.get(attr.oid, attr.oid.dotted_string)
        present.setdefault(name, []).append(str(attr.value))
    for name, values in present.items():
        path = f"subject.{name}"
        if name not in wanted:
            problems.append(_bad(path, "not allowed by the template"))
        elif len(values) > 1:
            problems.append(_bad(path, "appears more than once"))
        elif wanted[name] not in (REQUIRED, OPTIONAL) and values[0] != wanted[name]:
            problems.append(_bad(path, f"must be {wanted[name]!r}, not {values[0]!r}"))
    for name, value in wanted.items():
        if name not in present and value != OPTIONAL:
            problems.append(_bad(f"subject.{name}", "required by the template but missing"))
    return problems


def _match_dns(wanted: list[str], names: list[str]) -> list[AcmeProblem]:
    path = "extensions.subjectAltName.DNS"
    literals = {w.lower() for w in wanted if w not in (REQUIRED, OPTIONAL)}
    have = [n.lower() for n in names]
    problems = [_bad(path, f"must include {lit!r}") for lit in sorted(literals - set(have))]
    chosen = [n for n in have if n not in literals]
    if REQUIRED in wanted and not chosen:
        problems.append(
            _bad(path, "the template requires at least one name of the client's choosing")
        )
    if REQUIRED not in wanted and OPTIONAL not in wanted and chosen:
        problems.append(_bad(path, f"names not allowed by the template: {', '.join(chosen)}"))
    return problems


def _key_usage_names(ku: x509.KeyUsage) -> set[str]:
    flags = {
        "digitalSignature": ku.digital_signature,
        "nonRepudiation": ku.content_commitment,
        "keyEncipherment": ku.key_encipherment,
        "dataEncipherment": ku.data_encipherment,
        "keyAgreement": ku.key_agreement,
        "keyCertSign": ku.key_cert_sign,
        "cRLSign": ku.crl_sign,
    }
    names = {n for n, on in flags.items() if on}
    if ku.key_agreement:
        if ku.encipher_only:
            names.add("encipherOnly")
        if ku.decipher_only:
            names.add("decipherOnly")
    return names


def _match_extensions(
    template: Mapping[str, Any], csr: x509.CertificateSigningRequest
) -> list[AcmeProblem]:
    problems: list[AcmeProblem] = []
    wanted = template.get("extensions") or {}
    dns_names: list[str] = []
    emails: list[str] = []
    uris: list[str] = []
    ku: set[str] | None = None
    eku: set[str] | None = None
    for ext in csr.extensions:
        name = _HANDLED_EXTENSIONS.get(ext.oid)
        if name is None or name not in wanted:
            label = name or ext.oid.dotted_string
            problems.append(_bad(f"extensions.{label}", "not allowed by the template"))
            continue
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            dns_names = list(value.get_values_for_type(x509.DNSName))
            emails = list(value.get_values_for_type(x509.RFC822Name))
            uris = list(value.get_values_for_type(x509.UniformResourceIdentifier))
            if len(dns_names) + len(emails) + len(uris) != len(list(value)):
                problems.append(
                    _bad("extensions.subjectAltName", "only DNS, email and URI names are allowed")
                )
        elif isinstance(value, x509.KeyUsage):
            ku = _key_usage_names(value)
        elif isinstance(value, x509.ExtendedKeyUsage):
            eku = {oid.dotted_string for oid in value}
    san_wanted = _san_lists(wanted)
    if "DNS" in san_wanted:
        if not dns_names:
            problems.append(_bad("extensions.subjectAltName.DNS", "the CSR has no DNS names"))
        else:
            problems += _match_dns(san_wanted["DNS"], dns_names)
    elif dns_names:
        problems.append(_bad("extensions.subjectAltName.DNS", "not allowed by the template"))
    for kind, have_names in (("Email", emails), ("URI", uris)):
        expected_names = set(san_wanted.get(kind, []))
        if set(have_names) != expected_names:
            problems.append(
                _bad(
                    f"extensions.subjectAltName.{kind}",
                    f"must be {sorted(expected_names)}, not {sorted(have_names)}",
                )
            )
    if "keyUsage" in wanted:
        expected = set(wanted["keyUsage"] or [])
        problems += _match_usages("keyUsage", ku, expected, sorted)
    if "extendedKeyUsage" in wanted:
        expected = {_eku_dotted(str(e)) for e in wanted["extendedKeyUsage"] or []}
        problems += _match_usages("extendedKeyUsage", eku, expected, _eku_display)
    return problems


def _match_usages(
    key: str, have: set[str] | None, expected: set[str], show: Callable[[set[str]], list[str]]
) -> list[AcmeProblem]:
    if have is None:
        return [_bad(f"extensions.{key}", f"required: {', '.join(sorted(expected))}")]
    if have != expected:
        return [_bad(f"extensions.{key}", f"must be {show(expected)}, not {show(have)}")]
    return []


def _eku_display(oids: set[str]) -> list[str]:
    """Extended key usages by name where they have one (serverAuth), else by dotted OID."""
    return sorted(_EKU_NAMES.get(oid, oid) for oid in oids)


def match_csr(
    template: Mapping[str, Any], csr: x509.CertificateSigningRequest | bytes
) -> list[AcmeProblem]:
    """Every way ``csr`` departs from ``template`` (empty list when it fits).

    A template that ``validate_template`` rejects raises ``TemplateError``: that is the
    server's configuration at fault, not the client's CSR.
    """
    errors = validate_template(template)
    if errors:
        raise TemplateError("invalid CSR template: " + "; ".join(errors))
    request = load_csr(csr) if isinstance(csr, bytes) else csr
    problems: list[AcmeProblem] = []
    if not request.is_signature_valid:
        problems.append(_bad("signature", "the CSR's self-signature does not verify"))
    public = request.public_key()
    if not isinstance(
        public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    ):
        problems.append(_bad("keyTypes", f"unsupported key type {type(public).__name__}"))
    else:
        desc = _key_description(public)
        signature = _SIGNATURE_NAMES.get(request.signature_algorithm_oid)
        key_types = template.get("keyTypes") or []
        if not any(
            _key_type_matches(e, desc, signature) for e in key_types if isinstance(e, Mapping)
        ):
            problems.append(
                _bad(
                    "keyTypes",
                    f"key {desc} signed with {signature} is not among the allowed key types",
                )
            )
    problems += _match_subject(template, request)
    problems += _match_extensions(template, request)
    return problems


def check_csr(template: Mapping[str, Any], csr: x509.CertificateSigningRequest | bytes) -> None:
    """Raise ``AcmeProblem(badCSR)`` with one subproblem per mismatch, if any."""
    problems = match_csr(template, csr)
    if problems:
        summary = "; ".join(p.detail for p in problems)
        raise AcmeProblem(
            "badCSR",
            f"CSR does not match the delegation's template: {summary}",
            subproblems=problems,
        )


def build_csr_for_template(
    template: Mapping[str, Any],
    key: PrivateKey,
    dns_names: Sequence[str],
    subject: Mapping[str, str] | None = None,
) -> bytes:
    """A DER CSR for ``key`` and ``dns_names`` that satisfies ``template``.

    Literal subject values come from the template; ``"**"`` attributes must be given in
    ``subject``; ``"*"`` attributes are included when given. Literal SAN names of the template
    are added if missing.
    """
    desc = _key_description(key)
    entry = next(
        (
            e
            for e in template.get("keyTypes") or []
            if isinstance(e, Mapping) and _key_type_matches(e, desc, None)
        ),
        None,
    )
    if entry is None:
        raise TemplateError(f"the template does not allow key {desc}")
    hash_name = _SIGNATURE_HASH.get(str(entry.get("SignatureType")))
    given = dict(subject or {})
    attrs: dict[str, str] = {}
    for name, value in (template.get("subject") or {}).items():
        if value == REQUIRED:
            if name not in given:
                raise TemplateError(f"the template requires subject.{name}")
            attrs[name] = given[name]
        elif value == OPTIONAL:
            if name in given:
                attrs[name] = given[name]
        else:
            attrs[name] = str(value)
    extensions = template.get("extensions") or {}
    names = [n.lower() for n in dns_names]
    for literal in _san_template(extensions) or []:
        if literal not in (REQUIRED, OPTIONAL) and literal.lower() not in names:
            names.append(literal.lower())
    sans = _san_lists(extensions)
    return build_csr(
        key,
        names,
        emails=sans.get("Email", []),
        uris=sans.get("URI", []),
        subject=attrs,
        key_usage=extensions.get("keyUsage"),
        extended_key_usage=extensions.get("extendedKeyUsage"),
        signature_hash=hash_name,
    )
