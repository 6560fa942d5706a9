"""Hostile input never escapes as anything but AcmeProblem (no KeyError/TypeError)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from certdepot.acme import crypto, csr_template, eab, jws, messages
from certdepot.acme.problems import AcmeProblem

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "status", "identifiers", "type", "value", "authorizations", "finalize", "expires",
        "challenges", "identifier", "token", "error", "newNonce", "newAccount", "newOrder",
        "meta", "profiles", "suggestedWindow", "start", "end", "csr-template", "contact",
    ]
)  # fmt: skip
acme_like = st.dictionaries(keys, json_values, max_size=8)
CLASSES: list[Any] = [
    messages.Order, messages.Authorization, messages.Challenge, messages.Account,
    messages.Directory, messages.RenewalInfo, messages.Delegation, messages.Identifier,
]  # fmt: skip
KEY = crypto.generate_private_key()
CSR = crypto.build_csr(KEY, ["a.example.test"])


@settings(max_examples=150, deadline=None)
@given(doc=acme_like | json_values)
def test_messages_from_json(doc: Any) -> None:
    for cls in CLASSES:
        try:
            obj = cls.from_json(doc)
        except AcmeProblem:
            continue
        json.dumps(obj.to_json())  # whatever parsed must serialise again


@settings(max_examples=150, deadline=None)
@given(
    doc=st.dictionaries(
        st.sampled_from(["protected", "payload", "signature", "header"]), json_values
    )
    | json_values
)
def test_parse_jws(doc: Any) -> None:
    with contextlib.suppress(AcmeProblem):
        jws.parse_jws(json.dumps(doc).encode())


@settings(max_examples=100, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["alg", "kid", "jwk", "url", "nonce"]), json_values))
def test_parse_jws_with_hostile_protected_header(header: dict[str, Any]) -> None:
    body = {"protected": jws.b64encode(json.dumps(header).encode()), "payload": "", "signature": ""}
    try:
        parsed = jws.parse_jws(body)
        if parsed.jwk is not None:
            parsed.verify(jws.public_key_from_jwk(parsed.jwk))
    except AcmeProblem:
        pass


@settings(max_examples=100, deadline=None)
@given(
    binding=st.dictionaries(st.sampled_from(["protected", "payload", "signature"]), json_values)
    | json_values
)
def test_verify_eab(binding: Any) -> None:
    with contextlib.suppress(AcmeProblem):
        eab.verify_eab(
            binding, account_jwk=jws.public_jwk(KEY), url="u", hmac_key_for=lambda kid: b"k"
        )


@settings(max_examples=150, deadline=None)
@given(
    template=st.dictionaries(st.sampled_from(["keyTypes", "subject", "extensions"]), json_values)
    | json_values
)
def test_csr_template_match_and_validate(template: Any) -> None:
    errors = csr_template.validate_template(template)
    if isinstance(template, dict):
        try:
            problems = csr_template.match_csr(template, CSR)
        except csr_template.TemplateError:
            assert errors
        else:
            assert not errors and all(isinstance(p, AcmeProblem) for p in problems)
