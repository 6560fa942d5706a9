"""Is an RFC 9115 CSR template well formed? The RFC's own JSON Schema, then what it cannot say.

The schema is RFC 9115's appendix "CSR Template: JSON Schema", shipped unchanged as
``schemas/rfc9115-csr-template.json`` and checked with the ``jsonschema`` library
(draft 7, with format checking). It refuses what hand-written checks had let through:
key types without a curve, a length or a signature algorithm, an unknown signature
algorithm, an empty subject, empty SAN lists, an empty keyUsage or extendedKeyUsage.

Two certdepot extensions are declared here, not by editing the RFC's text:
``PublicKeyType: "Ed25519"`` (optionally ``SignatureType: "Ed25519"``) as a third kind of
key type, and ``dNSName`` as another spelling of the ``DNS`` SAN list.

What the schema cannot say is checked by hand afterwards (RFC 9115 §4.1 leaves "the value
of each subjectAltName entry is compatible with its type" and "the parameters in each
keyTypes entry form an acceptable combination" to the recipient): literal DNS names are DNS
names (the one normaliser, acme/dnsname.py), URIs are absolute, extended key usage OIDs
are OIDs, RSA lengths are 2048 to 8192 bits, and encipherOnly/decipherOnly come only with
keyAgreement (RFC 5280 §4.2.1.3).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from certdepot.acme import dnsname
from certdepot.acme.crypto import eku_oid

SCHEMA_FILE = "rfc9115-csr-template.json"
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
PLACEHOLDERS = ("*", "**")

_ED25519_KEY_TYPE: dict[str, Any] = {
    "$id": "#ed25519KeyType",
    "type": "object",
    "properties": {"PublicKeyType": {"type": "string", "const": "Ed25519"},
                   "SignatureType": {"type": "string", "const": "Ed25519"}},
    "required": ["PublicKeyType"],
    "additionalProperties": False,
}


def rfc_schema() -> dict[str, Any]:
    """The RFC's schema as shipped (a fresh copy)."""
    text = resources.files("certdepot.acme.schemas").joinpath(SCHEMA_FILE).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@functools.cache
def _validator() -> Draft7Validator:
    schema = copy.deepcopy(rfc_schema())
    # The RFC keeps its subschemas under "$defs", a keyword of later drafts that a draft-7
    # validator does not look into, so their "#name" anchors would not resolve. Listing
    # them under draft 7's "definitions" as well changes no constraint.
    defs = schema["$defs"]
    defs["ed25519KeyType"] = _ED25519_KEY_TYPE
    schema["definitions"] = defs
    schema["properties"]["keyTypes"]["items"]["anyOf"].append({"$ref": "#ed25519KeyType"})
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _as_rfc(template: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The template with the dNSName alias spelled DNS, for the schema."""
    doc = dict(template)
    ext = doc.get("extensions")
    san = ext.get("subjectAltName") if isinstance(ext, Mapping) else None
    if not isinstance(san, Mapping) or "dNSName" not in san:
        return doc, []
    if "DNS" in san:
        return doc, ["extensions.subjectAltName: give DNS or its alias dNSName, not both"]
    renamed = {("DNS" if k == "dNSName" else k): v for k, v in san.items()}
    doc["extensions"] = {**ext, "subjectAltName": renamed}  # type: ignore[dict-item]
    return doc, []


def _path(parts: Any) -> str:
    text = ".".join(str(p) for p in parts)
    return text or "template"


def schema_errors(template: Any) -> list[str]:
    """What RFC 9115's JSON Schema finds wrong, one line per error, in document order."""
    if not isinstance(template, Mapping):
        return ["template is not a JSON object"]
    doc, errors = _as_rfc(template)
    found = sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.path])
    return errors + [_message(e) for e in found]


def _message(error: ValidationError) -> str:
    path = _path(error.absolute_path)
    if error.validator != "anyOf" or not error.context:
        return f"{path}: {error.message[:200]}"
    # "not valid under any of the given schemas" names no field. The alternative whose
    # kind matches (its PublicKeyType const did not fail) is the one the author meant:
    # report what that one lacks.
    groups: dict[Any, list[ValidationError]] = {}
    for cause in error.context:
        groups.setdefault(cause.schema_path[0], []).append(cause)
    meant = [g for g in groups.values() if not any(c.validator == "const" for c in g)]
    if meant:
        cause = meant[0][0]
        return f"{_path(cause.absolute_path)}: {cause.message[:200]}"
    return f"{path}: {str(error.instance)[:80]} is none of the kinds RFC 9115 allows here"


def _dns_problems(names: Any) -> list[str]:
    out = []
    for i, name in enumerate(names if isinstance(names, list) else []):
        if name in PLACEHOLDERS:
            continue
        try:
            dnsname.normalize(name)
        except dnsname.InvalidName as exc:
            out.append(f"extensions.subjectAltName.DNS.{i}: {exc}")
    return out


def _uri_problems(uris: Any) -> list[str]:
    return [f"extensions.subjectAltName.URI.{i}: not an absolute URI"
            for i, uri in enumerate(uris if isinstance(uris, list) else [])
            if not isinstance(uri, str) or not urlsplit(uri).scheme
            or any(c.isspace() for c in uri)]


def _key_type_problems(key_types: Any) -> list[str]:
    out = []
    for i, entry in enumerate(key_types if isinstance(key_types, list) else []):
        if not isinstance(entry, Mapping) or entry.get("PublicKeyType") != "rsaEncryption":
            continue
        bits = entry.get("PublicKeyLength")
        if isinstance(bits, int) and not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            out.append(f"keyTypes.{i}.PublicKeyLength: must be {MIN_RSA_BITS} to "
                       f"{MAX_RSA_BITS} bits")
    return out


def _usage_problems(ext: Mapping[str, Any]) -> list[str]:
    out = []
    usages = ext.get("keyUsage")
    if isinstance(usages, list) and {"encipherOnly", "decipherOnly"} & set(usages) \
            and "keyAgreement" not in usages:
        out.append("extensions.keyUsage: encipherOnly/decipherOnly need keyAgreement")
    for i, eku in enumerate(ext.get("extendedKeyUsage") or []):
        try:
            eku_oid(str(eku))
        except ValueError:
            out.append(f"extensions.extendedKeyUsage.{i}: not a known name or an OID")
    return out


def beyond_schema(template: Mapping[str, Any]) -> list[str]:
    """The checks RFC 9115 leaves to the recipient (run on a schema-valid template)."""
    ext = template.get("extensions")
    ext = ext if isinstance(ext, Mapping) else {}
    san = ext.get("subjectAltName")
    san = san if isinstance(san, Mapping) else {}
    return (_key_type_problems(template.get("keyTypes"))
            + _dns_problems(san.get("DNS", san.get("dNSName")))
            + _uri_problems(san.get("URI")) + _usage_problems(ext))


def validate(template: Any) -> list[str]:
    """Every problem of a template; empty when it is usable."""
    errors = schema_errors(template)
    if errors:
        return errors
    return beyond_schema(template)
