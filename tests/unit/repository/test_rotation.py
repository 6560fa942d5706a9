"""Rotation of a shared certificate (issue 19) and who may revoke one (issue 15, item 6),
against the in-process app: fast checks of each rule; tests/integration/
test_repository_rotation.py runs the same story through the real server over TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from repository_testkit import BASE, Client, Env
from test_download import WEB, _download

from certdepot.acme import ari, crypto, jws
from certdepot.repository import consumers, inventory, renewal, rotation
from certdepot.repository import store as tables

TOKEN = "t" * 40


def _snapshot(env: Env) -> dict[str, Any]:
    return {"certs": sorted((r["id"], r["revoked"]) for r in
                            env.repo.store.select(tables.certificates)),
            "revocations": env.repo.store.select(tables.revocations),
            "managed": env.repo.store.select(tables.managed)}


async def _revoke(c: Client, leaf_pem: str, *, key: crypto.PrivateKey | None = None,
                  reason: int = 1) -> Any:
    leaf = crypto.parse_pem_chain(leaf_pem)[0]
    from cryptography.hazmat.primitives import serialization

    der = leaf.public_bytes(serialization.Encoding.DER)
    return await c.post((await c.dir())["revokeCert"],
                        {"certificate": jws.b64encode(der), "reason": reason},
                        use_jwk=key is not None, key=key)


async def test_downloaded_key_gives_no_revocation_right(env: Env) -> None:
    await renewal.run_once(env.repo)
    c = await env.tenant_client("team-a")
    _, pem, key = await _download(c, WEB)
    before = _snapshot(env)
    by_key = await _revoke(c, pem, key=key)
    assert by_key.status_code == 403, by_key.text
    assert by_key.json()["type"] == "urn:ietf:params:acme:error:unauthorized"
    by_account = await _revoke(c, pem)
    assert by_account.status_code == 403
    assert by_account.json()["type"].endswith(":unauthorized")
    assert _snapshot(env) == before


async def _ari(env: Env, pem: str, **headers: str) -> Any:
    cid = ari.cert_id(crypto.parse_pem_chain(pem)[0])
    return await env.http.get(f"{BASE}/acme/renewal-info/{cid}", headers=headers)


async def test_rotate_fixes_a_past_window_and_signals_consumers(env: Env) -> None:
    await renewal.run_once(env.repo)
    c = await env.tenant_client("team-a")
    headers = {"Certdepot-Cluster": "east", "Certdepot-Resources": "shop/web shop/api"}
    env.http.headers.update(headers)
    _, pem, _ = await _download(c, WEB)
    old = crypto.parse_pem_chain(pem)[0]
    rows = consumers.of_certificate(env.repo, "web")
    assert sorted(r["resource"] for r in rows) == ["shop/api", "shop/web"]
    assert {r["cluster"] for r in rows} == {"east"} and all(
        r["serial"] == crypto.serial_hex(old) for r in rows)

    done = await rotation.rotate(env.repo, "web", "keyCompromise", requested_by="test")
    assert done.old_serial == crypto.serial_hex(old) and done.new_serial != done.old_serial
    assert done.consumers == 2 and "CRL" in done.upstream
    cur = env.repo.store.get(tables.managed, "web")
    assert cur is not None
    new = env.repo.store.get(tables.certificates, cur["current_cert_id"])
    assert new is not None and new["serial"] == done.new_serial and not new["revoked"]

    first = await _ari(env, pem, **{"Certdepot-Account": c.kid or ""})
    assert first.status_code == 200, first.text
    doc = first.json()
    checked = consumers.of_certificate(env.repo, "web")
    assert all(r["last_checkin"] > r["delivered"] for r in checked)  # the poll checked in
    forged = await _ari(env, pem, **{"Certdepot-Account": f"{BASE}/acme/acct/nobody"})
    assert forged.status_code == 200
    assert consumers.of_certificate(env.repo, "web") == checked  # nobody's poll: no change
    start = dt.datetime.fromisoformat(doc["suggestedWindow"]["start"])
    end = dt.datetime.fromisoformat(doc["suggestedWindow"]["end"])
    assert start < end < dt.datetime.now(dt.UTC)
    assert doc["revoked"]["reason"] == "keyCompromise"
    assert doc["explanationURL"].startswith(f"{BASE}/rotation/")
    assert int(first.headers["Retry-After"]) == 30
    later = env.repo.clock
    env.repo.clock = lambda: later() + 7200  # the window is stored, not recomputed
    again = await _ari(env, pem)
    assert again.json()["suggestedWindow"] == doc["suggestedWindow"]
    env.repo.clock = later
    page = await env.http.get(doc["explanationURL"])
    assert page.status_code == 200 and "keyCompromise" in page.text

    stale = inventory.collect(env.repo.config, env.repo.store, stale=True)
    assert [(p["resource"], p["state"]) for p in stale[0]["consumers"]] == [
        ("shop/web", "revoked"), ("shop/api", "revoked")]
    assert consumers.counts(env.repo, "web", new["id"]) == (2, 2)
    scraped = (await env.http.get(f"{BASE}/metrics")).text
    assert 'certdepot_repository_certificate_consumers{name="web"} 2.0' in scraped
    assert 'certdepot_repository_certificate_consumers_superseded{name="web"} 2.0' in scraped

    _, pem2, _ = await _download(c, WEB)
    assert crypto.parse_pem_chain(pem2)[0].serial_number != old.serial_number
    assert inventory.collect(env.repo.config, env.repo.store, stale=True) == []
    assert consumers.counts(env.repo, "web", new["id"]) == (2, 0)
    scraped = (await env.http.get(f"{BASE}/metrics")).text
    assert 'certdepot_repository_certificate_consumers_superseded{name="web"} 0.0' in scraped


async def test_revoke_rotated_twice_is_already_revoked(env: Env) -> None:
    await renewal.run_once(env.repo)
    old = env.repo.store.select(tables.certificates)[0]
    await rotation.rotate(env.repo, "web", "superseded", requested_by="test")
    assert not rotation.mark_revoked(env.repo, {**old, "revoked": False}, 1,
                                     requested_by="again")
    assert len(env.repo.store.select(tables.revocations)) == 1


async def test_rotate_refuses_what_it_cannot_replace(env: Env) -> None:
    with pytest.raises(rotation.RotationError, match="no certificate to rotate"):
        await rotation.rotate(env.repo, "web", "keyCompromise", requested_by="test")
    with pytest.raises(rotation.RotationError, match="unknown reason"):
        await rotation.rotate(env.repo, "web", "cACompromise", requested_by="test")


async def test_policy_revoke_reissues_at_once(env_factory: Any) -> None:
    env: Env = await env_factory(tenants=[
        {"name": "team-a", "download": ["web"], "revoke": ["web"]},
        {"name": "team-b", "download": ["web"]}])
    await renewal.run_once(env.repo)
    b = await env.tenant_client("team-b")
    _, pem, _ = await _download(b, WEB)
    refused = await _revoke(b, pem)
    assert refused.status_code == 403
    a = await env.tenant_client("team-a")
    ok = await _revoke(a, pem)
    assert ok.status_code == 200, ok.text
    assert (await _revoke(a, pem)).json()["type"].endswith(":alreadyRevoked")
    old = crypto.serial_hex(crypto.parse_pem_chain(pem)[0])
    for _ in range(100):
        cur = env.repo.store.get(tables.managed, "web")
        row = env.repo.store.get(tables.certificates, cur["current_cert_id"]) if cur else None
        if row is not None and row["serial"] != old:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the revoked shared certificate was not re-issued")
    rev = env.repo.store.select(tables.revocations)
    assert len(rev) == 1 and rev[0]["requested_by"].startswith("tenant team-a")


async def test_admin_api(env_factory: Any, tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    closed: Env = await env_factory()
    r = await closed.http.post(f"{BASE}/admin/v1/certificates/web/rotate", json={})
    assert r.status_code == 404
    env: Env = await env_factory(admin={"tokenFile": str(token_file)})
    await renewal.run_once(env.repo)
    url = f"{BASE}/admin/v1/certificates/web/rotate"
    for auth in ({}, {"Authorization": "Bearer " + "x" * 40}, {"Authorization": TOKEN}):
        r = await env.http.post(url, json={"reason": "keyCompromise"}, headers=auth)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["type"].endswith(":unauthorized")
    assert env.repo.store.select(tables.revocations) == []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = await env.http.post(url, json={"reason": "cACompromise"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["type"].endswith(":badRevocationReason")
    r = await env.http.post(url, json={"reason": "keyCompromise"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["reason"] == "keyCompromise" and r.json()["newSerial"]
    inv = await env.http.get(f"{BASE}/admin/v1/inventory", headers=auth)
    assert inv.json()["apiVersion"] == inventory.API_VERSION
    web = next(c for c in inv.json()["certificates"] if c["name"] == "web")
    assert [c["revocation"]["reason"] for c in web["certificates"] if c["revoked"]] == [
        "keyCompromise"]


async def test_ocsp_and_crl_endpoints_refuse_garbage(env: Env) -> None:
    from cryptography import x509
    from cryptography.x509 import ocsp

    for body in (b"", b"\x30\x03\x02\x01\x01", b"[" * 3000, b"\xff" * 9000):
        r = await env.http.post(f"{BASE}/ca/local/ocsp", content=body,
                                headers={"Content-Type": "application/ocsp-request"})
        if len(body) > 8192:
            assert r.status_code == 413, r.text
            continue
        assert r.status_code == 200, r.text
        assert ocsp.load_der_ocsp_response(r.content).response_status == \
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    r = await env.http.get(f"{BASE}/ca/local/ocsp/not*base64")
    assert r.status_code == 200
    for url in (f"{BASE}/ca/imported/crl", f"{BASE}/ca/nope/crl"):
        r = await env.http.get(url)
        assert r.status_code == 404 and r.json()["type"].endswith(":malformed")
    crl = x509.load_der_x509_crl((await env.http.get(f"{BASE}/ca/local/crl")).content)
    assert len(crl) == 0


def test_consumer_identity_is_checked_not_copied() -> None:
    who = consumers.identity_from({
        "certdepot-cluster": "eu-1", "certdepot-resources": "shop/web shop/web BAD/x a/b/c ok/y"})
    assert who == consumers.Identity("eu-1", ("shop/web", "ok/y"))
    assert consumers.identity_from({"certdepot-cluster": "-bad cluster"}).cluster == ""
    many = " ".join(f"ns/n{i}" for i in range(500))
    assert len(consumers.identity_from({"certdepot-resources": many}).resources) == \
        consumers.MAX_RESOURCES


async def test_superseded_window_is_fixed(env: Env) -> None:
    await renewal.run_once(env.repo)
    old = env.repo.store.select(tables.certificates)[0]
    renewal.request_renewal(env.repo.store, "web")
    await renewal.run_once(env.repo)
    from certdepot.repository.routes import ari as ari_route

    first = ari_route.window_of(env.repo, old)
    real = env.repo.clock
    env.repo.clock = lambda: real() + 1800
    assert ari_route.window_of(env.repo, old) == first
    start = dt.datetime.fromisoformat(first["suggestedWindow"]["start"])
    assert start <= dt.datetime.now(dt.UTC) and "revoked" not in first


def test_revoke_grant_must_name_a_certificate() -> None:
    from repository_testkit import make_config

    from certdepot.repository.config import ConfigError

    with pytest.raises(ConfigError, match="revoke: unknown certificate"):
        make_config(tenants=[{"name": "t", "revoke": ["nope"]}])
