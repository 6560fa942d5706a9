"""Typed ACME resources: parsing real-world shaped JSON, extension fields, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from certdepot.acme import messages as m
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339

DIRECTORY = {
    "newNonce": "https://ca.test/nonce-plz",
    "newAccount": "https://ca.test/sign-me-up",
    "newOrder": "https://ca.test/order-plz",
    "revokeCert": "https://ca.test/revoke-cert",
    "keyChange": "https://ca.test/rollover-account-key",
    "renewalInfo": "https://ca.test/draft-ietf-acme-ari-03/renewalInfo",
    "meta": {
        "externalAccountRequired": False,
        "termsOfService": "data:text/plain,Do%20what%20thou%20wilt",
        "profiles": {"default": "The profile you know", "shortlived": "A short one"},
        "download-enabled": True,
    },
    "x-vendor": 1,
}

ORDER = {
    "status": "valid",
    "expires": "2026-12-02T06:00:00.123456789Z",
    "identifiers": [{"type": "dns", "value": "a.example.test"}],
    "notBefore": "2026-12-01T00:00:00Z",
    "authorizations": ["https://ca.test/authZ/1"],
    "finalize": "https://ca.test/finalize/1",
    "certificate": "https://ca.test/cert/1",
    "profile": "shortlived",
    "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    "download": True,
    "private-key": "https://ca.test/key/1",
}


def test_directory_with_profiles_and_extensions() -> None:
    d = m.Directory.from_json(DIRECTORY)
    assert d.new_nonce.endswith("nonce-plz") and d.renewal_info and d.key_change
    assert d.meta.profiles == {"default": "The profile you know", "shortlived": "A short one"}
    assert d.meta.download_enabled and not d.meta.delegation_enabled
    assert d.get("x-vendor") == 1 and "x-vendor" in d
    assert m.Directory.from_json(d.to_json()) == d
    assert d.to_json()["meta"]["download-enabled"] is True


def test_order_roundtrip_keeps_extension_fields() -> None:
    o = m.Order.from_json(ORDER, url="https://ca.test/order/1")
    assert o.url == "https://ca.test/order/1" and o.profile == "shortlived"
    assert o.expires == dt.datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=dt.UTC)
    assert o["download"] is True and o.get("private-key") == "https://ca.test/key/1"
    assert o.dns_names() == ["a.example.test"]
    out = o.to_json()
    assert out["download"] is True and out["notBefore"] == "2026-12-01T00:00:00Z"
    assert m.Order.from_json(out).identifiers == o.identifiers


def test_order_error_and_authorization_challenges() -> None:
    o = m.Order.from_json(
        {
            **ORDER,
            "status": "invalid",
            "error": {"type": "urn:ietf:params:acme:error:caa", "detail": "no"},
        }
    )
    assert o.error is not None and o.error.short_type == "caa" and o.error.status == 403
    authz = m.Authorization.from_json(
        {
            "status": "pending",
            "identifier": {"type": "dns", "value": "a.example.test"},
            "wildcard": True,
            "challenges": [
                {
                    "type": "http-01",
                    "url": "https://ca.test/chal/1",
                    "status": "pending",
                    "token": "t1",
                },
                {
                    "type": "dns-01",
                    "url": "https://ca.test/chal/2",
                    "status": "invalid",
                    "token": "t2",
                    "error": {"type": "urn:ietf:params:acme:error:dns", "detail": "NXDOMAIN"},
                    "validationRecord": [{"hostname": "a"}],
                },
            ],
        },
        url="https://ca.test/authz/1",
    )
    assert authz.wildcard and authz.url == "https://ca.test/authz/1"
    dns = authz.challenge("dns-01")
    assert dns is not None and dns.error is not None and dns.error.short_type == "dns"
    assert dns.get("validationRecord") == [{"hostname": "a"}]
    assert authz.challenge("tls-alpn-01") is None
    assert m.Authorization.from_json(authz.to_json()).challenges == authz.challenges


def test_account_and_delegation() -> None:
    a = m.Account.from_json(
        {
            "status": "valid",
            "contact": ["mailto:a@b.test"],
            "orders": "https://ca.test/o",
            "delegations": "https://x/d",
        }
    )
    assert a.delegations == "https://x/d" and a.contact == ["mailto:a@b.test"]
    assert m.Account.from_json({}).status == "valid"
    d = m.Delegation.from_json({"csr-template": {"keyTypes": []}, "cname-map": {"a": "b"}})
    assert d.to_json() == {"csr-template": {"keyTypes": []}, "cname-map": {"a": "b"}}


def test_renewal_info() -> None:
    r = m.RenewalInfo.from_json(
        {
            "suggestedWindow": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
            "explanationURL": "https://ca.test/why",
        }
    )
    assert r.is_open(dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC))
    assert not r.is_open(dt.datetime(2025, 12, 31, tzinfo=dt.UTC))
    assert m.RenewalInfo.from_json(r.to_json()) == r
    with pytest.raises(AcmeProblem, match="ends before"):
        m.RenewalInfo.from_json(
            {"suggestedWindow": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}
        )


@pytest.mark.parametrize(
    ("cls", "doc", "needle"),
    [
        (m.Order, {"identifiers": []}, "status"),
        (m.Order, {"status": 3, "identifiers": []}, "status"),
        (m.Order, {"status": "valid", "identifiers": [{"type": "dns"}]}, "value"),
        (m.Order, {"status": "valid", "identifiers": [], "expires": "yesterday"}, "expires"),
        (m.Order, {"status": "valid", "identifiers": [], "authorizations": [1]}, "authorizations"),
        (m.Directory, {"newNonce": "x", "newAccount": "y"}, "newOrder"),
        (m.Directory, [], "object"),
        (m.Authorization, {"status": "valid"}, "identifier"),
        (m.RenewalInfo, {}, "suggestedWindow"),
        (m.Challenge, {"type": "http-01", "status": "pending", "token": 5}, "token"),
    ],
)
def test_bad_documents_raise_malformed_naming_the_field(cls: Any, doc: object, needle: str) -> None:
    with pytest.raises(AcmeProblem, match=needle) as exc:
        cls.from_json(doc)
    assert exc.value.short_type == "malformed"


def test_time_helpers() -> None:
    t = m.parse_time("2026-03-04T05:06:07.5+02:00")
    assert t == dt.datetime(2026, 3, 4, 3, 6, 7, 500000, tzinfo=dt.UTC)
    assert t is not None and rfc3339(t, fraction=True) == "2026-03-04T03:06:07.500000Z"
    assert m.parse_time(None) is None
    assert m.Identifier.dns("WWW.Example.test.").value == "www.example.test"


def test_problem_retry_after_is_transport_metadata_not_document() -> None:
    problem = AcmeProblem("rateLimited", "slow down", retry_after=30.0)
    assert problem.retry_after == 30.0 and problem.status == 429
    assert "retry_after" not in problem.to_json()
    assert AcmeProblem.from_json(problem.to_json()).retry_after is None
    # Same document, different header: still the same problem.
    assert problem == AcmeProblem("rateLimited", "slow down")
    with pytest.raises(TypeError):
        AcmeProblem("rateLimited", "x", 429, None, (), {}, 30.0)  # type: ignore[call-arg]
