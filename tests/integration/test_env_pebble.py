"""Pebble is reachable over HTTPS verified with its listener CA, with profiles and EAB."""

from __future__ import annotations

import ssl

import httpx
import pytest
from cryptography import x509

from certdepot.testenv.pebble import PebbleEnv


def test_directory_over_verified_https(pebble: PebbleEnv) -> None:
    ctx = ssl.create_default_context(cafile=str(pebble.ca_path))
    response = httpx.get(pebble.directory_url, verify=ctx)
    assert response.status_code == 200
    directory = response.json()
    assert {"newAccount", "newNonce", "newOrder", "renewalInfo"} <= set(directory)
    assert directory["meta"].get("externalAccountRequired") is not True
    assert set(directory["meta"]["profiles"]) >= {"default", "shortlived"}


def test_tls_is_really_verified(pebble: PebbleEnv) -> None:
    # Without Pebble's CA the same request must fail verification.
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(pebble.directory_url, verify=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_eab_variant_requires_external_account(pebble_eab: PebbleEnv) -> None:
    directory = httpx.get(pebble_eab.directory_url, verify=pebble_eab.ssl_context()).json()
    assert directory["meta"]["externalAccountRequired"] is True
    assert len(pebble_eab.eab) >= 1
    assert pebble_eab.eab_required


def test_roots_and_challtestsrv(pebble: PebbleEnv) -> None:
    root = x509.load_pem_x509_certificate(pebble.roots_pem().encode())
    assert root.subject == root.issuer
    import dns.message
    import dns.query

    pebble.set_txt("_acme-challenge.env.example.", "token-value")
    query = dns.message.make_query("_acme-challenge.env.example.", "TXT")
    answer = dns.query.udp(query, "127.0.0.1", port=pebble.challtestsrv_dns_port, timeout=5)
    assert [r.strings for rrset in answer.answer for r in rrset] == [(b"token-value",)]
    # AAAA must be empty, or Pebble would validate against ::1.
    aaaa = dns.query.udp(dns.message.make_query("www.example.", "AAAA"), "127.0.0.1",
                         port=pebble.challtestsrv_dns_port, timeout=5)
    assert not aaaa.answer
    pebble.clear_txt("_acme-challenge.env.example.")


def test_factory_instances_are_independent(pebble_factory: object, pebble: PebbleEnv) -> None:
    assert callable(pebble_factory)
    other: PebbleEnv = pebble_factory(nonce_reject=0)
    try:
        assert other.port != pebble.port
        assert other.env["PEBBLE_WFE_NONCEREJECT"] == "0"
        assert httpx.get(other.directory_url, verify=other.ssl_context()).status_code == 200
    finally:
        other.stop()
    assert other.pebble is None
