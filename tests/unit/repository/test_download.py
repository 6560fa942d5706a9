"""The certificate download extension (docs/protocol.md) against the in-process app."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from repository_testkit import Client, Env

from certdepot.acme import ari, challenges, crypto, jws, keywrap
from certdepot.repository import renewal
from certdepot.repository import store as tables

WEB = ["example.test", "www.example.test"]


async def _download(c: Client, names: list[str], curve: str = "P-256"
                    ) -> tuple[dict[str, Any], str, crypto.PrivateKey]:
    r = await c.new_order(names, download=True)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["download"] is True and order["status"] == "ready"
    eph, jwk = keywrap.generate_ephemeral(curve)
    f = await c.post(order["finalize"], {"ephemeral-jwk": jwk})
    assert f.status_code == 200, f.text
    order = f.json()
    assert order["status"] == "valid"
    chain = await c.post(order["certificate"], None)
    assert chain.headers["content-type"].startswith("application/pem-certificate-chain")
    k = await c.post(order["private-key"], None)
    assert k.status_code == 200, k.text
    assert k.headers["content-type"] == "application/jose"
    header = json.loads(jws.b64decode(k.text.split(".")[0]))
    assert header["alg"] == "ECDH-ES" and header["enc"] == "A256GCM"
    assert header["cty"] == "application/pkcs8" and "epk" in header
    key = keywrap.unwrap_private_key(k.text, eph)
    return order, chain.text, key


async def _obtain(env: Env) -> None:
    await renewal.run_once(env.repo)


async def test_download_granted(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _obtain(env)
    c = await env.tenant_client("team-a")
    _, pem, key = await _download(c, list(reversed(WEB)))
    leaf = crypto.parse_pem_chain(pem)[0]
    assert crypto.public_key_matches(key, leaf)
    assert sorted(crypto.certificate_dns_names(leaf)) == WEB
    rows = env.repo.store.select(tables.deliveries)
    assert [(r["tenant"], r["serial"], r["managed_name"]) for r in rows] == [
        ("team-a", crypto.serial_hex(leaf), "web")]
    der = base64.b64encode(crypto.private_key_to_pkcs8_der(key)).decode()
    assert "PRIVATE KEY" not in caplog.text and der[:40] not in caplog.text


async def test_x25519_ephemeral(env: Env) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    _, pem, key = await _download(c, WEB, curve="X25519")
    assert crypto.public_key_matches(key, crypto.parse_pem_chain(pem)[0])


async def test_name_set_must_match_exactly(env: Env) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    r = await c.new_order(["www.example.test"], download=True)
    assert r.status_code == 400 and r.json()["type"].endswith(":rejectedIdentifier")
    r = await c.new_order([*WEB, "other.example.test"], download=True)
    assert r.json()["type"].endswith(":rejectedIdentifier")


async def test_other_tenant_refused(env: Env) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-b")
    r = await c.new_order(WEB, download=True)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")


@pytest.mark.parametrize("jwk", [
    {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
    {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    "not-a-jwk",
])
async def test_bad_ephemeral_key(env: Env, jwk: Any) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    order = (await c.new_order(WEB, download=True)).json()
    r = await c.post(order["finalize"], {"ephemeral-jwk": jwk})
    assert r.status_code == 400 and r.json()["type"].endswith(":badPublicKey"), r.text
    assert "PRIVATE" not in r.text


async def test_private_key_refusals(env: Env) -> None:
    await _obtain(env)
    a = await env.tenant_client("team-a")
    order_resp = await a.new_order(WEB, download=True)
    order_url = order_resp.headers["Location"]
    key_url = order_url + "/private-key"
    early = await a.post(key_url, None)
    assert early.status_code == 403 and early.json()["type"].endswith(":orderNotReady")
    _, jwk = keywrap.generate_ephemeral()
    done = (await a.post(order_resp.json()["finalize"], {"ephemeral-jwk": jwk})).json()
    assert done["private-key"] == key_url
    # another tenant's account
    b = await env.tenant_client("team-b")
    r = await b.post(key_url, None)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")
    assert "eyJ" not in r.text  # no JWE in a refusal
    # tampered request: payload swapped after signing
    r = await a.post(key_url, None, mutate=lambda body: body.update(
        payload=jws.b64encode(b"{}")))
    assert r.status_code == 400 and r.json()["type"].endswith(":malformed")
    # replayed nonce
    n = await a.nonce()
    ok = await a.post(key_url, None, nonce=n)
    assert ok.status_code == 200
    again = await a.post(key_url, None, nonce=n)
    assert again.status_code == 400 and again.json()["type"].endswith(":badNonce")
    # unauthenticated
    plain = await env.http.post(key_url)
    assert plain.status_code in (400, 415) and "application/problem+json" in \
        plain.headers["content-type"]
    # deactivated account
    assert a.kid
    await a.post(a.kid, {"status": "deactivated"})
    r = await a.post(key_url, None)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")
    assert len(env.repo.store.select(tables.deliveries)) == 1  # only the one good fetch


async def test_ari_signals_renewal(env: Env) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    _, pem1, _ = await _download(c, WEB)
    leaf1 = crypto.parse_pem_chain(pem1)[0]
    d = await c.dir()
    info = (await env.http.get(f"{d['renewalInfo']}/{ari.cert_id(leaf1)}")).json()
    start = dt.datetime.fromisoformat(info["suggestedWindow"]["start"])
    assert start > dt.datetime.now(dt.UTC)
    renewal.request_renewal(env.repo.store, "web")
    await renewal.run_once(env.repo)
    r = await env.http.get(f"{d['renewalInfo']}/{ari.cert_id(leaf1)}")
    assert "Retry-After" in r.headers
    start = dt.datetime.fromisoformat(r.json()["suggestedWindow"]["start"])
    assert start <= dt.datetime.now(dt.UTC)
    _, pem2, key2 = await _download(c, WEB)
    leaf2 = crypto.parse_pem_chain(pem2)[0]
    assert leaf2.serial_number != leaf1.serial_number
    assert crypto.public_key_matches(key2, leaf2)


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    tokens: dict[str, str] = {}

    def do_GET(self) -> None:
        token = self.path.rsplit("/", 1)[-1]
        body = self.tokens.get(token)
        self.send_response(200 if body else 404)
        self.end_headers()
        if body:
            self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[tuple[int, dict[str, str]]]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], _TokenHandler.tokens
    srv.shutdown()
    srv.server_close()


async def test_download_by_proof_of_control(env_factory: Any,
                                            token_server: tuple[int, dict[str, str]]) -> None:
    port, tokens = token_server
    env: Env = await env_factory(validation={"httpPort": port, "resolveTo": "127.0.0.1",
                                             "timeoutSeconds": 5})
    await _obtain(env)
    c = await env.tenant_client("team-b")
    # not granted and the certificate does not allow proof of control
    r = await c.new_order(["secret.example.test"], download=True)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")
    r = await c.new_order(["proof.example.test"], download=True)
    assert r.status_code == 201, r.text
    order, order_url = r.json(), r.headers["Location"]
    assert order["status"] == "pending"
    authz = (await c.post(order["authorizations"][0], None)).json()
    assert authz["status"] == "pending"
    ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
    tokens[ch["token"]] = challenges.key_authorization(ch["token"], jws.public_jwk(c.key))
    r = await c.post(ch["url"], {})
    assert r.status_code == 200
    for _ in range(100):
        await asyncio.sleep(0.05)
        o = (await c.post(order_url, None)).json()
        if o["status"] != "pending":
            break
    assert o["status"] == "ready", o
    eph, jwk = keywrap.generate_ephemeral()
    f = (await c.post(order["finalize"], {"ephemeral-jwk": jwk})).json()
    k = await c.post(f["private-key"], None)
    key = keywrap.unwrap_private_key(k.text, eph)
    pem = (await c.post(f["certificate"], None)).text
    assert crypto.public_key_matches(key, crypto.parse_pem_chain(pem)[0])


async def test_proof_of_control_wrong_token(env_factory: Any,
                                            token_server: tuple[int, dict[str, str]]) -> None:
    port, _tokens = token_server
    env: Env = await env_factory(validation={"httpPort": port, "resolveTo": "127.0.0.1",
                                             "timeoutSeconds": 5})
    await _obtain(env)
    c = await env.tenant_client("team-b")
    order = (await c.new_order(["proof.example.test"], download=True)).json()
    authz_url = order["authorizations"][0]
    authz = (await c.post(authz_url, None)).json()
    ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
    await c.post(ch["url"], {})
    for _ in range(100):
        await asyncio.sleep(0.05)
        authz = (await c.post(authz_url, None)).json()
        if authz["status"] != "pending":
            break
    assert authz["status"] == "invalid"
    _eph, jwk = keywrap.generate_ephemeral()
    r = await c.post(order["finalize"], {"ephemeral-jwk": jwk})
    assert r.status_code == 403 and r.json()["type"].endswith(":orderNotReady")


async def test_download_before_certificate_exists(env: Env) -> None:
    c = await env.tenant_client("team-a")  # renewal has not run: nothing held yet
    order = (await c.new_order(WEB, download=True)).json()
    _, jwk = keywrap.generate_ephemeral()
    r = await c.post(order["finalize"], {"ephemeral-jwk": jwk})
    assert r.status_code == 403 and r.json()["type"].endswith(":orderNotReady")
    assert r.headers["Retry-After"] == "10"


async def test_health_and_metrics(env: Env) -> None:
    assert (await env.http.get("/healthz")).text == "ok\n"
    assert (await env.http.get("/readyz")).status_code == 200
    await _obtain(env)
    c = await env.tenant_client("team-a")
    await _download(c, WEB)
    text = (await env.http.get("/metrics")).text
    assert 'certdepot_repository_key_deliveries_total{tenant="team-a"} 1.0' in text
    assert 'certdepot_repository_requests_total{endpoint="private_key",status="200"} 1.0' \
        in text
    assert 'certdepot_repository_certificate_expiration_timestamp_seconds{name="web"}' in text
    assert 'certdepot_repository_certificate_renewal_consecutive_failures{name="web"} 0.0' in text
