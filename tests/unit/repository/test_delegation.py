"""RFC 9115 delegation and RFC 8739 auto-renewal against the in-process app."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from repository_testkit import Client, Env

from certdepot.acme import crypto, csr_template, jws
from certdepot.repository import delegation as delegation_logic
from certdepot.repository import star

TEMPLATE: dict[str, Any] = {
    "keyTypes": [{"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
                  "SignatureType": "ecdsa-with-SHA256"}],
    "extensions": {"subjectAltName": {"DNS": ["**"]},
                   "keyUsage": ["digitalSignature"], "extendedKeyUsage": ["serverAuth"]},
}


def _tenants() -> list[dict[str, Any]]:
    return [
        {"name": "team-a", "download": ["web"], "issue": ["*.a.example.test"],
         "delegations": [{"name": "cdn", "csrTemplate": TEMPLATE,
                          "namePatterns": ["cdn-*.example.test"], "maxLifetime": "2d",
                          "issuer": "local", "allowCertificateGet": True,
                          "cnameMap": {"_acme-challenge.cdn-eu.example.test":
                                       "_acme-challenge.cdn-eu.ido.example.test"}}]},
        {"name": "team-b", "issue": ["*.b.example.test"],
         "delegations": [{"name": "b-only", "csrTemplate": TEMPLATE,
                          "namePatterns": ["b-*.example.test"], "issuer": "local"}]},
    ]


@pytest.fixture
async def denv(env_factory: Any) -> Env:
    e: Env = await env_factory(tenants=_tenants(), starMinLifetime="2s")
    return e


async def _delegation_url(c: Client) -> str:
    acct = (await c.post(c.kid or "", None)).json()
    lst = (await c.post(acct["delegations"], None)).json()["delegations"]
    assert len(lst) == 1
    return str(lst[0])


def _csr(names: list[str], key: crypto.PrivateKey | None = None, **kw: Any) -> str:
    der = csr_template.build_csr_for_template(TEMPLATE, key or crypto.generate_private_key(),
                                              names, **kw)
    return jws.b64encode(der)


async def test_directory_and_delegation_object(denv: Env) -> None:
    d = (await denv.http.get("/directory")).json()
    assert d["meta"]["delegation-enabled"] is True
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    obj = (await c.post(url, None)).json()
    assert obj["csr-template"] == TEMPLATE and "cname-map" in obj


async def test_delegated_order_issues_within_maximum(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    r = await c.new_order(["cdn-eu.example.test"], delegation=url)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "ready" and order["authorizations"] == []
    assert order["delegation"] == url
    f = await c.post(order["finalize"], {"csr": _csr(["cdn-eu.example.test"])})
    assert f.status_code == 200, f.text
    pem = (await c.post(f.json()["certificate"], None)).text
    leaf = crypto.parse_pem_chain(pem)[0]
    assert crypto.certificate_dns_names(leaf) == ["cdn-eu.example.test"]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc) == dt.timedelta(days=2)


async def test_exact_lifetime_asked(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    nb = dt.datetime.now(dt.UTC).replace(microsecond=0)
    na = nb + dt.timedelta(hours=5)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    order = (await c.new_order(["cdn-x.example.test"], delegation=url,
                               notBefore=nb.strftime(fmt), notAfter=na.strftime(fmt))).json()
    f = (await c.post(order["finalize"], {"csr": _csr(["cdn-x.example.test"])})).json()
    leaf = crypto.parse_pem_chain((await c.post(f["certificate"], None)).text)[0]
    assert leaf.not_valid_before_utc == nb and leaf.not_valid_after_utc == na
    too_long = await c.new_order(["cdn-x.example.test"], delegation=url,
                                 notAfter=(nb + dt.timedelta(days=3)).strftime(fmt))
    assert too_long.status_code == 400 and "maximum" in too_long.json()["detail"]


async def test_refusals(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    # a name outside the patterns: at newOrder
    r = await c.new_order(["www.example.test"], delegation=url)
    assert r.json()["type"].endswith(":rejectedIdentifier")
    assert r.json()["subproblems"][0]["identifier"]["value"] == "www.example.test"
    # another tenant's delegation
    b = await denv.tenant_client("team-b")
    burl = await _delegation_url(b)
    r = await c.new_order(["b-1.example.test"], delegation=burl)
    assert r.status_code == 403 and r.json()["type"].endswith(":unknownDelegation")
    r = await c.new_order(["cdn-1.example.test"], delegation=url + "x")
    assert r.json()["type"].endswith(":unknownDelegation")

    async def finalize_with(csr_b64: str) -> dict[str, Any]:
        order = (await c.new_order(["cdn-eu.example.test"], delegation=url)).json()
        resp = await c.post(order["finalize"], {"csr": csr_b64})
        assert resp.status_code >= 400, resp.text
        doc: dict[str, Any] = resp.json()
        return doc

    # extra SAN
    doc = await finalize_with(jws.b64encode(crypto.build_csr(
        crypto.generate_private_key(), ["cdn-eu.example.test", "evil.example.test"],
        key_usage=["digitalSignature"], extended_key_usage=["serverAuth"])))
    assert doc["type"].endswith((":rejectedIdentifier", ":badCSR"))
    # disallowed key type
    doc = await finalize_with(_csr_rsa(["cdn-eu.example.test"]))
    assert doc["type"].endswith(":badCSR")
    assert any("keyTypes" in s["detail"] for s in doc["subproblems"])
    # subject field not in the template
    doc = await finalize_with(jws.b64encode(crypto.build_csr(
        crypto.generate_private_key(), ["cdn-eu.example.test"], common_name="x",
        key_usage=["digitalSignature"], extended_key_usage=["serverAuth"])))
    assert doc["type"].endswith(":badCSR")
    assert any("subject" in s["detail"] for s in doc["subproblems"])


def _csr_rsa(names: list[str]) -> str:
    return jws.b64encode(crypto.build_csr(crypto.generate_private_key("rsa-2048"), names,
                                          key_usage=["digitalSignature"],
                                          extended_key_usage=["serverAuth"]))


async def test_star_auto_renewal_and_cancel(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await c.new_order(["cdn-star.example.test"], delegation=url, **{"auto-renewal": {
        "end-date": end, "lifetime": 4, "allow-certificate-get": True}})
    assert r.status_code == 201, r.text
    order = r.json()
    f = (await c.post(order["finalize"], {"csr": _csr(["cdn-star.example.test"])})).json()
    assert f["status"] == "valid" and "star-certificate" in f
    star_url = f["star-certificate"]
    first = await denv.http.get(star_url)  # unauthenticated GET, as asked
    assert first.status_code == 200 and "Cert-Not-After" in first.headers
    serial1 = crypto.parse_pem_chain(first.text)[0].serial_number
    await star.run_once(denv.repo)
    assert crypto.parse_pem_chain((await denv.http.get(star_url)).text)[0].serial_number \
        == serial1  # not yet half-time
    await asyncio.sleep(2.2)
    await star.run_once(denv.repo)
    second = await denv.http.get(star_url)
    leaf2 = crypto.parse_pem_chain(second.text)[0]
    assert leaf2.serial_number != serial1
    assert (leaf2.not_valid_after_utc - leaf2.not_valid_before_utc).total_seconds() == 4
    n = delegation_logic.cancel(denv.repo.store, "team-a", "cdn")
    assert n == 1
    gone = await denv.http.get(star_url)
    assert gone.status_code == 403 and gone.json()["type"].endswith(":autoRenewalCanceled")
    r = await c.new_order(["cdn-eu.example.test"], delegation=url)
    assert r.json()["type"].endswith(":unknownDelegation")


async def test_star_lifetime_over_maximum(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await c.new_order(["cdn-star.example.test"], delegation=url, **{"auto-renewal": {
        "end-date": end, "lifetime": 3 * 86400}})
    assert r.status_code == 400 and "maximum" in r.json()["detail"]


async def test_removed_delegation_stops_star(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    order = (await c.new_order(["cdn-rm.example.test"], delegation=url, **{"auto-renewal": {
        "end-date": end, "lifetime": 3600}})).json()
    f = (await c.post(order["finalize"], {"csr": _csr(["cdn-rm.example.test"])})).json()
    star_url = f["star-certificate"]
    assert (await c.post(star_url, None)).status_code == 200
    assert (await denv.http.get(star_url)).status_code == 404  # GET was not asked for
    tenant = denv.repo.config.tenant("team-a")
    assert tenant is not None
    tenant.delegations = []  # the admin removed it from the configuration
    await star.run_once(denv.repo)
    r = await c.post(star_url, None)
    assert r.status_code == 403 and r.json()["type"].endswith(":autoRenewalCanceled")


async def test_client_cancels_star(denv: Env) -> None:
    c = await denv.tenant_client("team-a")
    url = await _delegation_url(c)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await c.new_order(["cdn-c.example.test"], delegation=url, **{"auto-renewal": {
        "end-date": end, "lifetime": 3600}})
    order_url = r.headers["Location"]
    await c.post(r.json()["finalize"], {"csr": _csr(["cdn-c.example.test"])})
    done = await c.post(order_url, {"status": "canceled"})
    assert done.json()["status"] == "canceled"
    again = await c.post(order_url, {"status": "canceled"})
    assert again.json()["type"].endswith(":autoRenewalCancellationInvalid")
