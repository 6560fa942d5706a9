"""The hostile-input table, shared by the in-process suite and the real-process smoke run.

A ``World`` is a repository (reached over any httpx client) holding two tenants' accounts
and, for each of them, objects worth stealing: a valid download order with its private-key
URL, a valid plain order with its certificate, a pending proof-of-control order with its
authorization and challenge, and RFC 9115 delegations. Every case sends one hostile request
and states the HTTP status and problem type it must get; ``run_case`` also checks that the
answer is a problem document, never a 5xx, and that the store is unchanged.

Store comparison: every table is compared row for row, except
- ``nonces``: every answer hands out a fresh nonce (RFC 8555 §7.2); the repository mints
  them in batches, so rows added must be fresh unused nonces and the ``Replay-Nonce`` must
  be usable after the request; the request's own nonce may be consumed
  (the server consumes it after the signature verified, so a request with a *valid*
  signature burns its nonce even when it is then refused); expired nonces may be swept.
  For generic JWS attacks (forged, mis-addressed, unparseable) the nonce must NOT be
  consumed: a forger must not be able to burn a legitimate client's nonces.
- ``leases`` (real process only): the renewal loop takes and releases its per-entry
  leases every check interval on its own, so that table is housekeeping, not compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from repository_testkit import Client

from certdepot.acme import crypto, csr_template, eab, jws, keywrap
from certdepot.repository import store as tables
from certdepot.repository.store import Store
from certdepot.repository.tenants import EabCredentials

ACME = "urn:ietf:params:acme:error:"
JOSE = "application/jose+json"
WEB = ["example.test", "www.example.test"]

TEMPLATE: dict[str, Any] = {
    "keyTypes": [{"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
                  "SignatureType": "ecdsa-with-SHA256"}],
    "extensions": {"subjectAltName": {"DNS": ["**"]},
                   "keyUsage": ["digitalSignature"], "extendedKeyUsage": ["serverAuth"]},
}


def tenants_config() -> list[dict[str, Any]]:
    """team-a may download ``web`` and issue ``*.a.example.test``; team-b neither."""
    return [
        {"name": "team-a", "download": ["web"], "issue": ["*.a.example.test"],
         "delegations": [{"name": "cdn", "csrTemplate": TEMPLATE,
                          "namePatterns": ["cdn-*.example.test"], "maxLifetime": "2d",
                          "issuer": "local"}]},
        {"name": "team-b", "download": [], "issue": ["*.b.example.test"],
         "delegations": [{"name": "b-only", "csrTemplate": TEMPLATE,
                          "namePatterns": ["b-*.example.test"], "issuer": "local"}]},
    ]


def certificates_config() -> list[dict[str, Any]]:
    return [
        {"name": "web", "dnsNames": WEB, "issuer": "local", "lifetime": "3d"},
        {"name": "proofed", "dnsNames": ["proof.example.test"], "issuer": "local",
         "downloadByProof": True},
        {"name": "secret", "dnsNames": ["secret.example.test"], "issuer": "local"},
    ]


@dataclass
class RClient(Client):
    """The repository test kit's signing client, pointed at any base URL."""

    base: str = ""

    async def dir(self) -> dict[str, Any]:
        if not self.directory:
            self.directory = (await self.http.get(f"{self.base}/directory")).json()
        return self.directory


@dataclass
class World:
    http: httpx.AsyncClient
    base: str
    store: Store
    creds: dict[str, EabCredentials]
    a: RClient
    b: RClient
    refs: dict[str, str] = field(default_factory=dict)
    ders: dict[str, bytes] = field(default_factory=dict)
    # True for the real process: its renewal loop refreshes lease expiries on its own.
    lease_expiry_moves: bool = False

    def client(self, key: crypto.PrivateKey | None = None) -> RClient:
        # The directory is shared: fetching it would mint a nonce inside a case.
        return RClient(self.http, key=key or crypto.generate_private_key(), base=self.base,
                       directory=dict(self.a.directory))


def _csr_b64(names: list[str], key: crypto.PrivateKey | None = None) -> str:
    return jws.b64encode(crypto.build_csr(key or crypto.generate_private_key(), names))


async def build_world(http: httpx.AsyncClient, base: str, store: Store,
                      creds: dict[str, EabCredentials], *, lease_expiry_moves: bool = False
                      ) -> World:
    a, b = RClient(http, base=base), RClient(http, base=base)
    for c, t in ((a, "team-a"), (b, "team-b")):
        r = await c.register(creds[t])
        assert r.status_code == 201, r.text
    w = World(http, base, store, creds, a, b, lease_expiry_moves=lease_expiry_moves)
    d = await a.dir()
    w.refs.update(new_account=d["newAccount"], new_order=d["newOrder"],
                  revoke=d["revokeCert"], key_change=d["keyChange"],
                  new_nonce=d["newNonce"], renewal_info=d["renewalInfo"])
    for who, c in (("a", a), ("b", b)):
        acct = (await c.post(c.kid or "", None)).json()
        w.refs[f"{who}_acct"] = c.kid or ""
        w.refs[f"{who}_orders"] = acct["orders"]
        w.refs[f"{who}_delegs"] = acct["delegations"]
        lst = (await c.post(acct["delegations"], None)).json()["delegations"]
        w.refs[f"{who}_deleg"] = lst[0]

    # a: download of "web", finalized; the key is fetched once (one delivery recorded).
    r = await a.new_order(WEB, download=True)
    assert r.status_code == 201, r.text
    order = r.json()
    w.refs["dl_order"] = r.headers["Location"]
    w.refs["dl_authz"] = order["authorizations"][0]
    eph, jwk = keywrap.generate_ephemeral()
    f = await a.post(order["finalize"], {"ephemeral-jwk": jwk})
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    w.refs["dl_finalize"] = order["finalize"]
    w.refs["dl_privkey"] = f.json()["private-key"]
    w.refs["dl_cert"] = f.json()["certificate"]
    k = await a.post(w.refs["dl_privkey"], None)
    assert k.status_code == 200, k.text
    w.ders["web_key"] = crypto.private_key_to_pkcs8_der(keywrap.unwrap_private_key(k.text, eph))
    pem = (await a.post(w.refs["dl_cert"], None)).text
    w.ders["web_cert"] = crypto.parse_pem_chain(pem)[0].public_bytes(
        serialization.Encoding.DER)

    # a: plain issuance of one name, valid.
    r = await a.new_order(["x1.a.example.test"])
    assert r.status_code == 201, r.text
    order = r.json()
    w.refs["plain_order"] = r.headers["Location"]
    w.refs["plain_authz"] = order["authorizations"][0]
    f = await a.post(order["finalize"], {"csr": _csr_b64(["x1.a.example.test"])})
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    w.refs["plain_finalize"] = order["finalize"]
    w.refs["plain_cert"] = f.json()["certificate"]
    pem = (await a.post(w.refs["plain_cert"], None)).text
    w.ders["plain_cert"] = crypto.parse_pem_chain(pem)[0].public_bytes(
        serialization.Encoding.DER)

    # a: a proof-of-control download, pending (a challenge nobody answers).
    for who, c in (("a", a), ("b", b)):
        r = await c.new_order(["proof.example.test"], download=True)
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        order = r.json()
        w.refs[f"{who}_pend_order"] = r.headers["Location"]
        w.refs[f"{who}_pend_finalize"] = order["finalize"]
        w.refs[f"{who}_pend_privkey"] = r.headers["Location"] + "/private-key"
        w.refs[f"{who}_pend_authz"] = order["authorizations"][0]
        authz = (await c.post(order["authorizations"][0], None)).json()
        w.refs[f"{who}_pend_chall"] = authz["challenges"][0]["url"]

    # a deactivated account of team-a.
    dead = w.client()
    r = await dead.register(creds["team-a"])
    assert r.status_code == 201, r.text
    r = await dead.post(dead.kid or "", {"status": "deactivated"})
    assert r.status_code == 200, r.text
    w.refs["dead_acct"] = dead.kid or ""
    w.dead = dead  # type: ignore[attr-defined]
    return w


# Findings in other owners' code: the case stays in the table and must fail until fixed.
KNOWN: dict[str, str] = {
    # Fixed in 93b6954 (repository owner): R1 csr-rsa-1024, R2 csr-requests-keycertsign.
}


# ---- the store snapshot ----------------------------------------------------------------

_TABLES = [t for t in tables.metadata.sorted_tables if t.name != "nonces"]


def snapshot(w: World) -> tuple[dict[str, list[str]], set[tuple[str, float]]]:
    rows: dict[str, list[str]] = {}
    with w.store.engine.connect() as c:
        for t in _TABLES:
            got = [dict(r) for r in c.execute(sa.select(t)).mappings()]
            if t.name == "leases" and w.lease_expiry_moves:
                continue
            rows[t.name] = sorted(json.dumps(r, sort_keys=True, default=repr) for r in got)
        nonces = {(r.value, r.expires) for r in c.execute(sa.select(tables.nonces))}
    return rows, nonces


# ---- requests ---------------------------------------------------------------------------

@dataclass
class Req:
    method: str
    url: str
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": JOSE})
    nonce: str | None = None  # a valid nonce the request carried, to check it is not burnt


def b64j(obj: Any) -> str:
    return jws.b64encode(json.dumps(obj, separators=(",", ":")).encode())


def payload_b64(payload: Any) -> str:
    return "" if payload is None else b64j(payload)


def es256(key: crypto.PrivateKey, message: bytes) -> bytes:
    """A raw JWS ES256 signature (r||s) for hand-built JWS objects."""
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_jws(protected: dict[str, Any], payload: str, signer: crypto.PrivateKey | None
            ) -> dict[str, str]:
    p = b64j(protected)
    sig = es256(signer, f"{p}.{payload}".encode()) if signer is not None else b""
    return {"protected": p, "payload": payload, "signature": jws.b64encode(sig)}


async def fresh_nonce(w: World) -> str:
    r = await w.http.head(w.refs["new_nonce"])
    return r.headers["Replay-Nonce"]


@dataclass(frozen=True)
class Endpoint:
    name: str
    ref: str  # key into World.refs
    payload: Callable[[World], Any]
    uses_jwk: bool = False


def _new_account_payload(w: World) -> dict[str, Any]:
    return {"termsOfServiceAgreed": True}


ENDPOINTS: list[Endpoint] = [
    Endpoint("newAccount", "new_account", _new_account_payload, uses_jwk=True),
    Endpoint("newOrder", "new_order",
             lambda w: {"identifiers": [{"type": "dns", "value": "x2.a.example.test"}]}),
    Endpoint("order", "plain_order", lambda w: None),
    Endpoint("finalize", "a_pend_finalize",
             lambda w: {"ephemeral-jwk": keywrap.generate_ephemeral()[1]}),
    Endpoint("authz", "a_pend_authz", lambda w: None),
    Endpoint("challenge", "a_pend_chall", lambda w: {}),
    Endpoint("certificate", "plain_cert", lambda w: None),
    Endpoint("privateKey", "dl_privkey", lambda w: None),
    Endpoint("account", "a_acct", lambda w: None),
    Endpoint("ordersList", "a_orders", lambda w: None),
    Endpoint("keyChange", "key_change", lambda w: {}),
    Endpoint("revoke", "revoke",
             lambda w: {"certificate": jws.b64encode(w.ders["plain_cert"])}),
    Endpoint("delegationsList", "a_delegs", lambda w: None),
    Endpoint("delegation", "a_deleg", lambda w: None),
]


@dataclass(frozen=True)
class Mutation:
    name: str
    status: int
    ptype: str
    # (world, endpoint, url, nonce) -> request; nonce is fresh and valid unless noted
    build: Callable[[World, Endpoint, str, str], Awaitable[Req]]
    ptype_jwk: str | None = None  # a different expectation on the jwk endpoint
    # endpoint name -> (status, type, burns nonce) where that resource defines otherwise
    overrides: dict[str, tuple[int, str, bool]] = field(default_factory=dict)


def _signer(w: World, ep: Endpoint) -> tuple[crypto.PrivateKey, dict[str, Any]]:
    """The key and the kid/jwk header member a legitimate request would use."""
    if ep.uses_jwk:
        key = crypto.generate_private_key()
        return key, {"jwk": jws.public_jwk(key)}
    return w.a.key, {"kid": w.a.kid}


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


async def _legit(w: World, ep: Endpoint, target: str, fresh: str, **over: Any
                 ) -> dict[str, str]:
    key, who = _signer(w, ep)
    prot: dict[str, Any] = {"alg": "ES256", "url": target, "nonce": fresh, **who}
    prot.update(over)
    for k, v in list(prot.items()):
        if v is _DROP:
            del prot[k]
    return raw_jws(prot, payload_b64(ep.payload(w)), key)


_DROP = object()


def _m(name: str, status: int, ptype: str, **kw: Any
       ) -> Callable[[Callable[[World, Endpoint, str, str], Awaitable[Req]]], None]:
    def deco(fn: Callable[[World, Endpoint, str, str], Awaitable[Req]]) -> None:
        MUTATIONS.append(Mutation(name, status, ptype, fn, **kw))
    return deco


MUTATIONS: list[Mutation] = []


@_m("alg-none", 400, "badSignatureAlgorithm")
async def _alg_none(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    _, who = _signer(w, ep)
    doc = {"protected": b64j({"alg": "none", "url": url, "nonce": nonce, **who}),
           "payload": payload_b64(ep.payload(w)), "signature": ""}
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("alg-HS256", 400, "badSignatureAlgorithm")
async def _alg_hmac(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    _, who = _signer(w, ep)
    p = b64j({"alg": "HS256", "url": url, "nonce": nonce, **who})
    pl = payload_b64(ep.payload(w))
    # The "key" an attacker would try: the account's public JWK bytes (key confusion).
    mac = hmac.new(json.dumps(jws.public_jwk(w.a.key)).encode(), f"{p}.{pl}".encode(),
                   hashlib.sha256).digest()
    return Req("POST", url, _body({"protected": p, "payload": pl,
                                   "signature": jws.b64encode(mac)}), nonce=nonce)


@_m("alg-missing", 400, "badSignatureAlgorithm")
async def _alg_missing(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, alg=_DROP)), nonce=nonce)


@_m("alg-RS256-on-EC-key", 400, "malformed")
async def _alg_mismatch(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, alg="RS256")), nonce=nonce)


@_m("alg-ES384-on-P256-key", 400, "malformed")
async def _alg_es384(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, alg="ES384")), nonce=nonce)


@_m("url-other-resource", 403, "unauthorized")
async def _url_other(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    other = w.refs["new_order"] if ep.name != "newOrder" else w.refs["new_account"]
    return Req("POST", url, _body(await _legit(w, ep, other, nonce)), nonce=nonce)


@_m("url-other-host", 403, "unauthorized")
async def _url_host(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    evil = "https://evil.test" + url[len(w.base):]
    return Req("POST", url, _body(await _legit(w, ep, evil, nonce)), nonce=nonce)


@_m("url-trailing-slash", 403, "unauthorized")
async def _url_slash(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url + "/", nonce)), nonce=nonce)


@_m("url-missing", 400, "malformed")
async def _url_missing(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, url=_DROP)), nonce=nonce)


@_m("nonce-missing", 400, "badNonce")
async def _nonce_missing(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, nonce=_DROP)), nonce=nonce)


@_m("nonce-unknown", 400, "badNonce")
async def _nonce_unknown(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    fake = jws.b64encode(os.urandom(24))
    return Req("POST", url, _body(await _legit(w, ep, url, fake)), nonce=nonce)


@_m("nonce-not-a-string", 400, "badNonce")
async def _nonce_int(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, nonce=12345)), nonce=nonce)


@_m("nonce-expired", 400, "badNonce")
async def _nonce_expired(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    old = "expired-" + jws.b64encode(os.urandom(12))
    w.store.insert(tables.nonces, value=old, expires=time.time() - 5)
    return Req("POST", url, _body(await _legit(w, ep, url, old)), nonce=nonce)


@_m("nonce-reused", 400, "badNonce")
async def _nonce_reused(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    used = await fresh_nonce(w)
    r = await w.a.post(w.refs["a_acct"], None, nonce=used)  # a legitimate use
    assert r.status_code == 200, r.text
    return Req("POST", url, _body(await _legit(w, ep, url, used)), nonce=nonce)


@_m("kid-and-jwk", 400, "malformed")
async def _both(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(
        w, ep, url, nonce, kid=w.a.kid, jwk=jws.public_jwk(w.a.key))), nonce=nonce)


@_m("kid-unknown", 400, "accountDoesNotExist", ptype_jwk="malformed")
async def _kid_unknown(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    kid = w.refs["a_acct"].rsplit("/", 1)[0] + "/nosuchaccount"
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, kid=kid, jwk=_DROP)),
               nonce=nonce)


@_m("kid-other-host", 400, "accountDoesNotExist", ptype_jwk="malformed")
async def _kid_host(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    kid = "https://evil.test" + w.refs["a_acct"][len(w.base):]
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, kid=kid, jwk=_DROP)),
               nonce=nonce)


@_m("kid-path-traversal", 400, "accountDoesNotExist", ptype_jwk="malformed")
async def _kid_traversal(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    kid = w.refs["a_acct"] + "/../" + w.refs["b_acct"].rsplit("/", 1)[1]
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, kid=kid, jwk=_DROP)),
               nonce=nonce)


@_m("kid-not-a-string", 400, "malformed")
async def _kid_int(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce, kid=7, jwk=_DROP)),
               nonce=nonce)


@_m("wrong-key-member", 400, "malformed",
    # revokeCert also takes a jwk (the certificate's key): a's account key is not it.
    overrides={"revoke": (403, "unauthorized", True)})
async def _wrong_member(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    # jwk where the resource wants kid, and kid where newAccount wants jwk.
    if ep.uses_jwk:
        doc = raw_jws({"alg": "ES256", "url": url, "nonce": nonce, "kid": w.a.kid},
                      payload_b64(ep.payload(w)), w.a.key)
    else:
        doc = raw_jws({"alg": "ES256", "url": url, "nonce": nonce,
                       "jwk": jws.public_jwk(w.a.key)}, payload_b64(ep.payload(w)), w.a.key)
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("signed-by-another-key", 400, "malformed")
async def _other_key(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    _, who = _signer(w, ep)
    doc = raw_jws({"alg": "ES256", "url": url, "nonce": nonce, **who},
                  payload_b64(ep.payload(w)), crypto.generate_private_key())
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("signed-by-other-tenant", 400, "malformed")
async def _b_key(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    _, who = _signer(w, ep)
    doc = raw_jws({"alg": "ES256", "url": url, "nonce": nonce, **who},
                  payload_b64(ep.payload(w)), w.b.key)
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("payload-swapped-after-signing", 400, "malformed")
async def _tampered(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["payload"] = b64j({"status": "deactivated", "identifiers": []})
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("signature-truncated", 400, "malformed")
async def _sig_short(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["signature"] = doc["signature"][:20]
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("protected-bad-base64", 400, "malformed")
async def _prot_b64(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["protected"] = "!!!" + doc["protected"]
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("protected-not-json", 400, "malformed")
async def _prot_json(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["protected"] = jws.b64encode(b"{not json")
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("protected-not-utf8", 400, "malformed")
async def _prot_utf8(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["protected"] = jws.b64encode(b"\xff\xfe\x00{")
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("protected-array", 400, "malformed")
async def _prot_array(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["protected"] = b64j(["alg", "ES256"])
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("payload-bad-base64", 400, "malformed")
async def _pl_b64(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    doc["payload"] = "%%%"
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("body-not-json", 400, "malformed")
async def _body_text(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, b"protected=abc&payload=def", nonce=nonce)


@_m("body-binary", 400, "malformed")
async def _body_bin(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, os.urandom(64) + b"\xff", nonce=nonce)


@_m("body-json-array", 400, "malformed")
async def _body_array(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body([await _legit(w, ep, url, nonce)]), nonce=nonce)


@_m("body-empty", 400, "malformed")
async def _body_empty(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, b"", nonce=nonce)


@_m("general-serialization", 400, "malformed")
async def _general(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    gen = {"payload": doc["payload"], "signatures": [
        {"protected": doc["protected"], "signature": doc["signature"]}]}
    return Req("POST", url, _body(gen), nonce=nonce)


@_m("unprotected-header", 400, "malformed")
async def _unprot(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc: dict[str, Any] = dict(await _legit(w, ep, url, nonce))
    doc["header"] = {"kid": w.refs["b_acct"]}
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("member-missing", 400, "malformed")
async def _missing(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc = await _legit(w, ep, url, nonce)
    del doc["signature"]
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("member-not-a-string", 400, "malformed")
async def _member_type(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    doc: dict[str, Any] = dict(await _legit(w, ep, url, nonce))
    doc["payload"] = {"identifiers": []}
    return Req("POST", url, _body(doc), nonce=nonce)


@_m("content-type-json", 415, "malformed")
async def _ctype(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce)),
               {"Content-Type": "application/json"}, nonce=nonce)


@_m("content-type-missing", 415, "malformed")
async def _ctype_missing(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce)), {}, nonce=nonce)


@_m("content-type-form", 415, "malformed")
async def _ctype_form(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("POST", url, _body(await _legit(w, ep, url, nonce)),
               {"Content-Type": "application/x-www-form-urlencoded"}, nonce=nonce)


@_m("method-GET", 405, "malformed")
async def _get(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("GET", url, b"", {}, nonce=nonce)


@_m("method-PUT", 405, "malformed")
async def _put(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("PUT", url, _body(await _legit(w, ep, url, nonce)), nonce=nonce)


@_m("method-DELETE", 405, "malformed")
async def _delete(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    return Req("DELETE", url, b"", {}, nonce=nonce)


@_m("oversized-body", 413, "malformed")
async def _big(w: World, ep: Endpoint, url: str, nonce: str) -> Req:
    key, who = _signer(w, ep)
    pad = {"identifiers": [], "pad": "A" * 80_000}
    doc = raw_jws({"alg": "ES256", "url": url, "nonce": nonce, **who}, b64j(pad), key)
    return Req("POST", url, _body(doc), nonce=nonce)


# ---- running one case ---------------------------------------------------------------------

async def send(w: World, req: Req) -> httpx.Response:
    return await w.http.request(req.method, req.url, content=req.content, headers=req.headers)


def check_problem(r: httpx.Response, status: int, ptype: str) -> None:
    assert r.status_code < 500, f"5xx: {r.status_code} {r.text}"
    assert r.status_code == status, f"want {status} {ptype}, got {r.status_code} {r.text}"
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc.get("type") == ACME + ptype, f"want {ptype}, got {doc}"
    assert doc.get("status") == status, doc
    assert r.headers.get("Replay-Nonce"), "every ACME answer carries a fresh nonce"


def secret_needles(w: World) -> dict[str, str]:
    """Text forms of the secrets this world knows, none of which an answer may contain."""
    der = w.ders["web_key"]
    out = {"downloaded key (base64)": base64.b64encode(der).decode()[:48],
           "downloaded key (base64url)": jws.b64encode(der)[:48]}
    for t, c in w.creds.items():
        out[f"EAB HMAC key of {t}"] = c.hmac_key
    return out


def check_no_secrets(w: World, r: httpx.Response) -> None:
    text = r.text
    assert "PRIVATE KEY" not in text, "a PEM private key in an error answer"
    for what, needle in secret_needles(w).items():
        assert needle not in text, f"{what} in an error answer"


def check_store(w: World, before: tuple[dict[str, list[str]], set[tuple[str, float]]],
                after: tuple[dict[str, list[str]], set[tuple[str, float]]],
                r: httpx.Response, *, may_burn: set[str], must_keep: str | None,
                may_mint: set[str] | None = None) -> None:
    rows0, n0 = before
    rows1, n1 = after
    for name in rows0:
        assert rows0[name] == rows1[name], f"table {name} changed by a rejected request"
    now = time.time()
    v0 = {v for v, _ in n0}
    v1 = {v for v, _ in n1}
    # Nonces are minted in batches (6b28e69): rows added are fresh, unused pool entries;
    # the nonce handed out must be among them or the pool, and must still be usable.
    added = {(v, e) for v, e in n1 if v not in v0}
    assert all(e > now for _, e in added), f"stale nonces added: {added}"
    handed = r.headers.get("Replay-Nonce")
    assert handed in v1, "the Replay-Nonce handed out is not a usable nonce"
    del may_mint
    removed = {(v, e) for v, e in n0 if v not in v1}
    unexplained = {v for v, e in removed if v not in may_burn and e >= now - 1}
    assert not unexplained, f"nonces consumed: {unexplained}"
    if must_keep is not None:
        assert must_keep in v1, "a rejected forged request burnt a valid nonce"


async def run_mutation(w: World, m: Mutation, ep: Endpoint) -> None:
    url = w.refs[ep.ref]
    nonce = await fresh_nonce(w)
    req = await m.build(w, ep, url, nonce)
    before = snapshot(w)
    r = await send(w, req)
    after = snapshot(w)
    status, ptype, burns = m.status, m.ptype, False
    if ep.uses_jwk and m.ptype_jwk:
        ptype = m.ptype_jwk
    if ep.name in m.overrides:
        status, ptype, burns = m.overrides[ep.name]
    check_problem(r, status, ptype)
    check_no_secrets(w, r)
    sent = _sent_nonces(r)
    check_store(w, before, after, r, may_burn=sent if burns else set(),
                must_keep=None if burns else req.nonce)


# ---- semantic cases ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    status: int
    ptype: str
    # prepare runs before the snapshot (fresh orders etc.); send runs between snapshots
    send: Callable[[World, Any], Awaitable[httpx.Response]]
    prepare: Callable[[World], Awaitable[Any]] | None = None


CASES: list[Case] = []


def case(name: str, status: int, ptype: str,
         prepare: Callable[[World], Awaitable[Any]] | None = None
         ) -> Callable[[Callable[[World, Any], Awaitable[httpx.Response]]], None]:
    def deco(fn: Callable[[World, Any], Awaitable[httpx.Response]]) -> None:
        CASES.append(Case(name, status, ptype, fn, prepare))
    return deco


async def run_case(w: World, c: Case) -> None:
    state = await c.prepare(w) if c.prepare else None
    before = snapshot(w)
    r = await c.send(w, state)
    after = snapshot(w)
    check_problem(r, c.status, c.ptype)
    check_no_secrets(w, r)
    # Semantic refusals come after the signature check: the request's nonce is spent,
    # which is RFC 8555's defined behaviour; nothing else may change.
    # The case fetched its nonce itself (HEAD newNonce) between the snapshots.
    sent = _sent_nonces(r)
    check_store(w, before, after, r, may_burn=sent, must_keep=None, may_mint=sent)


def _sent_nonces(r: httpx.Response) -> set[str]:
    try:
        doc = json.loads(r.request.content or b"{}")
        return {json.loads(jws.b64decode(doc["protected"]))["nonce"]}
    except (ValueError, KeyError, TypeError, RecursionError):  # hostile bodies: 3,000 '['
        return set()


# -- External Account Binding

async def _new_account(w: World, payload: dict[str, Any], key: crypto.PrivateKey | None = None
                       ) -> httpx.Response:
    c = w.client(key)
    return await c.post(w.refs["new_account"], payload, use_jwk=True)


def _eab(w: World, key: crypto.PrivateKey, tenant: str = "team-a", **over: Any
         ) -> dict[str, str]:
    cr = w.creds[tenant]
    return eab.create_eab(key, over.get("kid", cr.kid), over.get("hmac", cr.hmac_key),
                          over.get("url", w.refs["new_account"]))


def _hmac_b64() -> str:
    return jws.b64encode(os.urandom(32))


@case("eab-missing", 400, "externalAccountRequired")
async def _eab_missing(w: World, s: Any) -> httpx.Response:
    return await _new_account(w, {"termsOfServiceAgreed": True})


@case("eab-wrong-mac", 403, "unauthorized")
async def _eab_wrong(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"externalAccountBinding": _eab(w, k, hmac=_hmac_b64())}, k)


@case("eab-other-tenants-mac", 403, "unauthorized")
async def _eab_other_mac(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"externalAccountBinding": _eab(
        w, k, kid=w.creds["team-a"].kid, hmac=w.creds["team-b"].hmac_key)}, k)


@case("eab-unknown-kid", 403, "unauthorized")
async def _eab_unknown(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"externalAccountBinding": _eab(w, k, kid="kid-nope")}, k)


@case("eab-reused-for-another-key", 403, "unauthorized")
async def _eab_reused(w: World, s: Any) -> httpx.Response:
    # Replay a binding made for key k1 in a newAccount signed by key k2.
    k1, k2 = crypto.generate_private_key(), crypto.generate_private_key()
    return await _new_account(w, {"externalAccountBinding": _eab(w, k1)}, k2)


@case("eab-wrong-url", 403, "unauthorized")
async def _eab_url(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"externalAccountBinding": _eab(
        w, k, url=w.refs["new_order"])}, k)


def _eab_raw(w: World, prot: dict[str, Any], payload: Any, key_b64: str | None = None
             ) -> dict[str, str]:
    p, pl = b64j(prot), b64j(payload)
    mac = hmac.new(jws.b64decode(key_b64 or w.creds["team-a"].hmac_key), f"{p}.{pl}".encode(),
                   hashlib.sha256).digest()
    return {"protected": p, "payload": pl, "signature": jws.b64encode(mac)}


@case("eab-alg-none", 400, "badSignatureAlgorithm")
async def _eab_none(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    b = _eab_raw(w, {"alg": "none", "kid": w.creds["team-a"].kid, "url": w.refs["new_account"]},
                 jws.public_jwk(k))
    b["signature"] = ""
    return await _new_account(w, {"externalAccountBinding": b}, k)


@case("eab-alg-ES256", 400, "badSignatureAlgorithm")
async def _eab_es(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    b = _eab_raw(w, {"alg": "ES256", "kid": w.creds["team-a"].kid,
                     "url": w.refs["new_account"]}, jws.public_jwk(k))
    return await _new_account(w, {"externalAccountBinding": b}, k)


@case("eab-with-nonce", 400, "malformed")
async def _eab_nonce(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    b = _eab_raw(w, {"alg": "HS256", "kid": w.creds["team-a"].kid, "nonce": "abc",
                     "url": w.refs["new_account"]}, jws.public_jwk(k))
    return await _new_account(w, {"externalAccountBinding": b}, k)


@case("eab-payload-not-a-jwk", 403, "unauthorized")
async def _eab_payload(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    b = _eab_raw(w, {"alg": "HS256", "kid": w.creds["team-a"].kid,
                     "url": w.refs["new_account"]}, {"kty": "EC"})
    return await _new_account(w, {"externalAccountBinding": b}, k)


@case("eab-not-an-object", 400, "malformed")
async def _eab_str(w: World, s: Any) -> httpx.Response:
    return await _new_account(w, {"externalAccountBinding": "kid-123"})


@case("eab-bad-base64", 400, "malformed")
async def _eab_b64(w: World, s: Any) -> httpx.Response:
    return await _new_account(w, {"externalAccountBinding": {
        "protected": "@@", "payload": "@@", "signature": "@@"}})


@case("eab-missing-signature", 400, "malformed")
async def _eab_nosig(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    b = dict(_eab(w, k))
    del b["signature"]
    return await _new_account(w, {"externalAccountBinding": b}, k)


@case("account-contact-not-mailto", 400, "unsupportedContact")
async def _contact(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"contact": ["tel:+1555"],
                                  "externalAccountBinding": _eab(w, k)}, k)


@case("account-contact-not-a-list", 400, "malformed")
async def _contact_type(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    return await _new_account(w, {"contact": "mailto:a@example.test",
                                  "externalAccountBinding": _eab(w, k)}, k)


@case("account-only-return-existing", 400, "accountDoesNotExist")
async def _only_existing(w: World, s: Any) -> httpx.Response:
    return await _new_account(w, {"onlyReturnExisting": True})


@case("account-jwk-private-or-bogus", 400, "badPublicKey")
async def _bogus_jwk(w: World, s: Any) -> httpx.Response:
    k = crypto.generate_private_key()
    bogus = {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}
    doc = raw_jws({"alg": "ES256", "url": w.refs["new_account"], "nonce": await fresh_nonce(w),
                   "jwk": bogus}, b64j({"termsOfServiceAgreed": True}), k)
    return await w.http.post(w.refs["new_account"], content=_body(doc),
                             headers={"Content-Type": JOSE})


@case("account-update-status-valid", 400, "malformed")
async def _acct_status(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["a_acct"], {"status": "revoked"})


@case("account-update-bad-contact", 400, "unsupportedContact")
async def _acct_contact(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["a_acct"], {"contact": ["http://evil.test"]})


@case("deactivated-account-new-order", 403, "unauthorized")
async def _dead_order(w: World, s: Any) -> httpx.Response:
    return await w.dead.new_order(["x3.a.example.test"])  # type: ignore[attr-defined,no-any-return]


@case("deactivated-account-fetch", 403, "unauthorized")
async def _dead_fetch(w: World, s: Any) -> httpx.Response:
    return await w.dead.post(w.refs["plain_order"], None)  # type: ignore[attr-defined,no-any-return]


# -- key change

@case("keychange-inner-not-jws", 400, "malformed")
async def _kc_garbage(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["key_change"], {"hello": "world"})


def _inner(w: World, new: crypto.PrivateKey, *, url: str | None = None,
           account: str | None = None, old: dict[str, Any] | None = None,
           nonce: str | None = None) -> bytes:
    body = jws.sign({"account": account or w.a.kid,
                     "oldKey": old if old is not None else jws.public_jwk(w.a.key)},
                    new, url=url or w.refs["key_change"], nonce=nonce)
    return json.dumps(body).encode()


@case("keychange-inner-wrong-url", 400, "malformed")
async def _kc_url(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["key_change"],
                          _inner(w, crypto.generate_private_key(), url=w.refs["new_order"]))


@case("keychange-inner-other-account", 400, "malformed")
async def _kc_acct(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["key_change"],
                          _inner(w, crypto.generate_private_key(), account=w.b.kid))


@case("keychange-inner-wrong-old-key", 400, "malformed")
async def _kc_old(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["key_change"], _inner(
        w, crypto.generate_private_key(), old=jws.public_jwk(w.b.key)))


@case("keychange-inner-with-nonce", 400, "malformed")
async def _kc_nonce(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["key_change"],
                          _inner(w, crypto.generate_private_key(), nonce="abc"))


@case("keychange-to-other-tenants-key", 409, "malformed")
async def _kc_clash(w: World, s: Any) -> httpx.Response:
    # Taking over team-b's key would merge identities: refused with 409 + Location.
    return await w.a.post(w.refs["key_change"], _inner(w, w.b.key))


@case("keychange-inner-bad-signature", 400, "malformed")
async def _kc_sig(w: World, s: Any) -> httpx.Response:
    inner = json.loads(_inner(w, crypto.generate_private_key()))
    inner["signature"] = jws.b64encode(os.urandom(64))
    return await w.a.post(w.refs["key_change"], json.dumps(inner).encode())


# -- newOrder

def _idents(*names: str, kind: str = "dns") -> dict[str, Any]:
    return {"identifiers": [{"type": kind, "value": n} for n in names]}


@case("order-name-outside-policy", 400, "rejectedIdentifier")
async def _o_policy(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["www.b.example.test"])


@case("order-other-tenants-name", 400, "rejectedIdentifier")
async def _o_other(w: World, s: Any) -> httpx.Response:
    return await w.b.new_order(["x.a.example.test"])


@case("order-two-labels-under-wildcard-pattern", 400, "rejectedIdentifier")
async def _o_deep(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["evil.x.a.example.test"])


@case("order-wildcard-not-granted", 400, "rejectedIdentifier")
async def _o_wild(w: World, s: Any) -> httpx.Response:
    # The pattern *.a.example.test grants that wildcard literally, never a wider one.
    return await w.a.new_order(["*.example.test"])


@case("order-suffix-lookalike", 400, "rejectedIdentifier")
async def _o_suffix(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x.a.example.test.evil.test"])


@case("order-ip-identifier", 400, "unsupportedIdentifier")
async def _o_ip(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], _idents("127.0.0.1", kind="ip"))


@case("order-identifiers-empty", 400, "malformed")
async def _o_empty(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], {"identifiers": []})


@case("order-identifiers-not-a-list", 400, "malformed")
async def _o_notlist(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], {"identifiers": "x.a.example.test"})


@case("order-identifier-value-not-string", 400, "malformed")
async def _o_value(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], {"identifiers": [{"type": "dns", "value": 5}]})


@case("order-post-as-get", 400, "malformed")
async def _o_pag(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], None)


@case("order-profile-not-string", 400, "malformed")
async def _o_profile(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], {**_idents("x4.a.example.test"), "profile": 3})


@case("order-notafter-on-plain", 400, "malformed")
async def _o_notafter(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["new_order"], {**_idents("x4.a.example.test"),
                                                "notAfter": "2030-01-01T00:00:00Z"})


@case("order-name-with-nul", 400, "rejectedIdentifier")
async def _o_nul(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x\x00.a.example.test"])


@case("order-name-with-space", 400, "rejectedIdentifier")
async def _o_space(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x y.a.example.test"])


@case("order-name-overlong-label", 400, "rejectedIdentifier")
async def _o_long(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x" * 64 + ".a.example.test"])


# -- download misuse

@case("download-not-granted", 403, "unauthorized")
async def _d_b_web(w: World, s: Any) -> httpx.Response:
    return await w.b.new_order(WEB, download=True)


@case("download-secret-not-granted", 403, "unauthorized")
async def _d_secret(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["secret.example.test"], download=True)


@case("download-name-subset", 400, "rejectedIdentifier")
async def _d_subset(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["www.example.test"], download=True)


@case("download-name-superset", 400, "rejectedIdentifier")
async def _d_superset(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order([*WEB, "secret.example.test"], download=True)


@case("download-flag-not-true", 400, "malformed")
async def _d_flag(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(WEB, download="yes")


@case("download-finalize-with-csr", 400, "malformed", prepare=lambda w: _ready_download(w))
async def _d_csr(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"csr": _csr_b64(WEB)})


async def _ready_download(w: World) -> str:
    r = await w.a.new_order(WEB, download=True)
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


def _rsa_jwk() -> dict[str, str]:
    return jws.public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@case("download-ephemeral-rsa", 400, "badPublicKey", prepare=lambda w: _ready_download(w))
async def _d_rsa(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"ephemeral-jwk": _rsa_jwk()})


@case("download-ephemeral-with-private-d", 400, "badPublicKey",
      prepare=lambda w: _ready_download(w))
async def _d_private(w: World, s: Any) -> httpx.Response:
    jwk = dict(keywrap.generate_ephemeral()[1])
    jwk["d"] = jws.b64encode(os.urandom(32))
    return await w.a.post(s, {"ephemeral-jwk": jwk})


@case("download-ephemeral-off-curve", 400, "badPublicKey", prepare=lambda w: _ready_download(w))
async def _d_offcurve(w: World, s: Any) -> httpx.Response:
    jwk = dict(keywrap.generate_ephemeral()[1])
    jwk["y"] = jws.b64encode(b"\x01" * 32)
    return await w.a.post(s, {"ephemeral-jwk": jwk})


@case("download-ephemeral-ed25519", 400, "badPublicKey", prepare=lambda w: _ready_download(w))
async def _d_okp(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"ephemeral-jwk": {"kty": "OKP", "crv": "Ed25519",
                                                "x": jws.b64encode(os.urandom(32))}})


@case("download-ephemeral-string", 400, "badPublicKey", prepare=lambda w: _ready_download(w))
async def _d_str(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"ephemeral-jwk": "P-256"})


@case("download-ephemeral-missing", 400, "badPublicKey", prepare=lambda w: _ready_download(w))
async def _d_none(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {})


@case("privkey-other-tenant", 403, "unauthorized")
async def _pk_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["dl_privkey"], None)


@case("privkey-other-account-same-tenant", 403, "unauthorized",
      prepare=lambda w: _second_a(w))
async def _pk_a2(w: World, s: Any) -> httpx.Response:
    return await s.post(w.refs["dl_privkey"], None)  # type: ignore[no-any-return]


async def _second_a(w: World) -> RClient:
    c = w.client()
    r = await c.register(w.creds["team-a"])
    assert r.status_code == 201, r.text
    return c


@case("privkey-with-payload", 400, "malformed")
async def _pk_payload(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["dl_privkey"], {})


@case("privkey-of-plain-order", 404, "malformed")
async def _pk_plain(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["plain_order"] + "/private-key", None)


@case("privkey-unknown-order", 404, "malformed")
async def _pk_unknown(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["plain_order"].rsplit("/", 1)[0] + "/nope/private-key", None)


@case("privkey-pending-order", 403, "orderNotReady")
async def _pk_pending(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["a_pend_privkey"], None)


@case("privkey-other-tenants-pending-order", 403, "unauthorized")
async def _pk_b_pending(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["b_pend_privkey"], None)


@case("finalize-pending-download", 403, "orderNotReady")
async def _f_pending(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["a_pend_finalize"],
                          {"ephemeral-jwk": keywrap.generate_ephemeral()[1]})


@case("finalize-valid-download-again", 403, "orderNotReady")
async def _f_again(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["dl_finalize"],
                          {"ephemeral-jwk": keywrap.generate_ephemeral()[1]})


# -- foreign objects

for _name, _ref in [("order", "plain_order"), ("download-order", "dl_order"),
                    ("authz", "plain_authz"), ("download-authz", "dl_authz"),
                    ("pending-authz", "a_pend_authz"), ("certificate", "plain_cert"),
                    ("download-certificate", "dl_cert")]:
    def _mk(ref: str) -> Callable[[World, Any], Awaitable[httpx.Response]]:
        async def fetch(w: World, s: Any) -> httpx.Response:
            return await w.b.post(w.refs[ref], None)
        return fetch
    case(f"foreign-{_name}-fetch", 404, "malformed")(_mk(_ref))


@case("foreign-challenge-trigger", 404, "malformed")
async def _ch_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_pend_chall"], {})


@case("foreign-authz-deactivate", 404, "malformed")
async def _az_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_pend_authz"], {"status": "deactivated"})


@case("foreign-order-finalize", 404, "malformed")
async def _f_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_pend_finalize"],
                          {"ephemeral-jwk": keywrap.generate_ephemeral()[1]})


@case("foreign-order-cancel", 404, "malformed")
async def _cancel_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["plain_order"], {"status": "canceled"})


@case("foreign-account-read", 403, "unauthorized")
async def _acct_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_acct"], None)


@case("foreign-account-deactivate", 403, "unauthorized")
async def _acct_b_kill(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_acct"], {"status": "deactivated"})


@case("foreign-orders-list", 403, "unauthorized")
async def _orders_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_orders"], None)


@case("foreign-delegations-list", 403, "unauthorized")
async def _dl_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_delegs"], None)


@case("foreign-delegation-object", 403, "unauthorized")
async def _do_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["a_deleg"], None)


@case("foreign-challenge-of-own-authz-path", 404, "malformed")
async def _ch_mix(w: World, s: Any) -> httpx.Response:
    # b's authz id with a's challenge id: challenges are looked up inside the authz.
    b_authz = w.refs["b_pend_authz"].rsplit("/", 1)[1]
    a_chall = w.refs["a_pend_chall"].rsplit("/", 1)[1]
    return await w.b.post(w.refs["b_pend_chall"].rsplit("/", 2)[0] + f"/{b_authz}/{a_chall}",
                          {})


@case("revoke-foreign-plain-cert", 403, "unauthorized")
async def _rv_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["revoke"], {"certificate": jws.b64encode(w.ders["plain_cert"])})


@case("revoke-managed-cert-by-downloader", 403, "unauthorized")
async def _rv_managed(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["revoke"], {"certificate": jws.b64encode(w.ders["web_cert"])})


# Issue 15 item 6: a downloaded key gives no revocation right over a shared certificate,
# whatever the reason; and no tenant without the policy's ``revoke`` grant may revoke it.
def _web_key_client(w: World) -> RClient:
    return w.client(crypto.load_private_key(w.ders["web_key"]))


for _reason in (None, 0, 1, 4, 5):
    @case(f"revoke-managed-cert-with-downloaded-key-reason-{_reason}", 403, "unauthorized")
    async def _rv_dl_key(w: World, s: Any, reason: int | None = _reason) -> httpx.Response:
        payload: dict[str, Any] = {"certificate": jws.b64encode(w.ders["web_cert"])}
        if reason is not None:
            payload["reason"] = reason
        return await _web_key_client(w).post(w.refs["revoke"], payload, use_jwk=True)


@case("revoke-managed-cert-by-ungranted-tenant", 403, "unauthorized")
async def _rv_managed_b(w: World, s: Any) -> httpx.Response:
    return await w.b.post(w.refs["revoke"], {"certificate": jws.b64encode(w.ders["web_cert"]),
                                             "reason": 1})


@case("revoke-managed-cert-reason-bool", 400, "badRevocationReason")
async def _rv_managed_bool(w: World, s: Any) -> httpx.Response:
    return await _web_key_client(w).post(
        w.refs["revoke"], {"certificate": jws.b64encode(w.ders["web_cert"]), "reason": True},
        use_jwk=True)


@case("admin-rotate-when-admin-api-off", 404, "malformed")
async def _admin_off(w: World, s: Any) -> httpx.Response:
    return await w.http.post(w.base + "/admin/v1/certificates/web/rotate",
                             json={"reason": "keyCompromise"},
                             headers={"Authorization": "Bearer " + "x" * 40})


@case("admin-inventory-when-admin-api-off", 404, "malformed")
async def _admin_inv_off(w: World, s: Any) -> httpx.Response:
    return await w.http.get(w.base + "/admin/v1/inventory")


@case("rotation-page-of-unrevoked-cert", 404, "malformed")
async def _rotation_page(w: World, s: Any) -> httpx.Response:
    cert = x509.load_der_x509_certificate(w.ders["web_cert"])
    from certdepot.acme import ari

    return await _get(w, "/rotation/" + ari.cert_id(cert))


@case("revoke-with-wrong-cert-key", 403, "unauthorized")
async def _rv_jwk(w: World, s: Any) -> httpx.Response:
    c = w.client()
    return await c.post(w.refs["revoke"], {"certificate": jws.b64encode(w.ders["plain_cert"])},
                        use_jwk=True)


@case("revoke-bad-reason", 400, "badRevocationReason")
async def _rv_reason(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["revoke"], {"certificate": jws.b64encode(w.ders["plain_cert"]),
                                             "reason": 7})


@case("revoke-not-der", 400, "malformed")
async def _rv_garbage(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["revoke"], {"certificate": "AAAA"})


@case("revoke-unknown-cert", 404, "malformed")
async def _rv_unknown(w: World, s: Any) -> httpx.Response:
    key = crypto.generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x1.a.example.test")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return await w.a.post(w.refs["revoke"], {"certificate": jws.b64encode(
        cert.public_bytes(serialization.Encoding.DER))})


# -- plain finalize with bad CSRs (each on a fresh ready order)

async def _ready_plain(w: World) -> str:
    name = f"c{os.urandom(4).hex()}.a.example.test"
    r = await w.a.new_order([name])
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return f"{r.json()['finalize']} {name}"


def _fin(s: str) -> tuple[str, str]:
    url, name = s.split()
    return url, name


def _raw_csr(key: Any, names: list[str], algorithm: Any = None,
             extensions: list[tuple[x509.ExtensionType, bool]] | None = None) -> bytes:
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    for ext, crit in extensions or []:
        b = b.add_extension(ext, critical=crit)
    return b.sign(key, algorithm if algorithm is not None else hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


@case("csr-wrong-name", 400, "badCSR", prepare=_ready_plain)
async def _csr_wrong(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": _csr_b64(["x9.a.example.test"])})


@case("csr-extra-name", 400, "badCSR", prepare=_ready_plain)
async def _csr_extra(w: World, s: Any) -> httpx.Response:
    url, name = _fin(s)
    return await w.a.post(url, {"csr": _csr_b64([name, "www.example.test"])})


@case("csr-foreign-name", 400, "badCSR", prepare=_ready_plain)
async def _csr_foreign(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": _csr_b64(["x.b.example.test"])})


@case("csr-not-base64", 400, "badCSR", prepare=_ready_plain)
async def _csr_b64bad(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": "***"})


@case("csr-garbage-der", 400, "badCSR", prepare=_ready_plain)
async def _csr_garbage(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": jws.b64encode(b"\x30\x03\x02\x01\x00" + os.urandom(40))})


@case("csr-is-a-certificate", 400, "badCSR", prepare=_ready_plain)
async def _csr_cert(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": jws.b64encode(w.ders["plain_cert"])})


@case("csr-missing", 400, "malformed", prepare=_ready_plain)
async def _csr_missing(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {})


@case("csr-not-a-string", 400, "malformed", prepare=_ready_plain)
async def _csr_int(w: World, s: Any) -> httpx.Response:
    url, _ = _fin(s)
    return await w.a.post(url, {"csr": 12})


@case("csr-bad-signature", 400, "badCSR", prepare=_ready_plain)
async def _csr_sig(w: World, s: Any) -> httpx.Response:
    url, name = _fin(s)
    der = bytearray(crypto.build_csr(crypto.generate_private_key("rsa-2048"), [name]))
    der[-10] ^= 0xFF  # inside the RSA signature value
    return await w.a.post(url, {"csr": jws.b64encode(bytes(der))})


@case("csr-rsa-1024", 400, "badCSR", prepare=_ready_plain)
async def _csr_rsa1024(w: World, s: Any) -> httpx.Response:
    url, name = _fin(s)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return await w.a.post(url, {"csr": jws.b64encode(_raw_csr(weak, [name]))})


@case("csr-requests-keycertsign", 400, "badCSR", prepare=_ready_plain)
async def _csr_kcs(w: World, s: Any) -> httpx.Response:
    url, name = _fin(s)
    ku = x509.KeyUsage(digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False)
    return await w.a.post(url, {"csr": jws.b64encode(_raw_csr(
        crypto.generate_private_key(), [name], extensions=[(ku, True)]))})


@case("csr-finalize-valid-order-again", 403, "orderNotReady")
async def _csr_again(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["plain_finalize"], {"csr": _csr_b64(["x1.a.example.test"])})


# -- delegation misuse

@case("delegation-other-tenants-url", 403, "unknownDelegation")
async def _dg_b(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["b-1.example.test"], delegation=w.refs["b_deleg"])


@case("delegation-url-not-a-string", 400, "malformed")
async def _dg_type(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["cdn-1.example.test"], delegation=["cdn"])


@case("delegation-unknown-name", 403, "unknownDelegation")
async def _dg_unknown(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["cdn-1.example.test"],
                               delegation=w.refs["a_deleg"].rsplit("/", 1)[0] + "/nope")


@case("delegation-name-outside-pattern", 400, "rejectedIdentifier")
async def _dg_name(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["www.example.test"], delegation=w.refs["a_deleg"])


@case("delegation-name-two-labels", 400, "rejectedIdentifier")
async def _dg_deep(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["cdn-x.evil.example.test"], delegation=w.refs["a_deleg"])


@case("delegation-lifetime-too-long", 400, "malformed")
async def _dg_life(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["cdn-1.example.test"], delegation=w.refs["a_deleg"],
                               notAfter="2099-01-01T00:00:00Z")


@case("delegation-object-other-account-path", 403, "unauthorized")
async def _dg_obj(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["b_deleg"], None)


async def _ready_delegated(w: World) -> str:
    r = await w.a.new_order(["cdn-1.example.test"], delegation=w.refs["a_deleg"])
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


@case("delegation-csr-rsa-not-in-template", 400, "badCSR", prepare=_ready_delegated)
async def _dg_rsa(w: World, s: Any) -> httpx.Response:
    der = crypto.build_csr(crypto.generate_private_key("rsa-2048"), ["cdn-1.example.test"],
                           key_usage=["digitalSignature"], extended_key_usage=["serverAuth"])
    return await w.a.post(s, {"csr": jws.b64encode(der)})


@case("delegation-csr-extra-extension", 400, "badCSR", prepare=_ready_delegated)
async def _dg_ext(w: World, s: Any) -> httpx.Response:
    der = crypto.build_csr(crypto.generate_private_key(), ["cdn-1.example.test"],
                           key_usage=["digitalSignature", "keyCertSign"],
                           extended_key_usage=["serverAuth"])
    return await w.a.post(s, {"csr": jws.b64encode(der)})


@case("delegation-csr-other-name", 400, "badCSR", prepare=_ready_delegated)
async def _dg_csr_name(w: World, s: Any) -> httpx.Response:
    der = csr_template.build_csr_for_template(TEMPLATE, crypto.generate_private_key(),
                                              ["cdn-2.example.test"])
    return await w.a.post(s, {"csr": jws.b64encode(der)})


@case("delegation-csr-name-outside-delegation", 400, "rejectedIdentifier",
      prepare=_ready_delegated)
async def _dg_csr_out(w: World, s: Any) -> httpx.Response:
    der = csr_template.build_csr_for_template(TEMPLATE, crypto.generate_private_key(),
                                              ["cdn-1.example.test", "www.example.test"])
    return await w.a.post(s, {"csr": jws.b64encode(der)})


@case("delegation-csr-subject-not-in-template", 400, "badCSR", prepare=_ready_delegated)
async def _dg_subject(w: World, s: Any) -> httpx.Response:
    der = crypto.build_csr(crypto.generate_private_key(), ["cdn-1.example.test"],
                           subject={"organization": "Evil"}, key_usage=["digitalSignature"],
                           extended_key_usage=["serverAuth"])
    return await w.a.post(s, {"csr": jws.b64encode(der)})


@case("delegation-finalize-by-other-tenant", 404, "malformed", prepare=_ready_delegated)
async def _dg_fin_b(w: World, s: Any) -> httpx.Response:
    der = csr_template.build_csr_for_template(TEMPLATE, crypto.generate_private_key(),
                                              ["cdn-1.example.test"])
    return await w.b.post(s, {"csr": jws.b64encode(der)})


# -- unauthenticated resources

async def _get(w: World, path: str) -> httpx.Response:
    return await w.http.get(w.base + path)


@case("ari-not-a-certid", 400, "malformed")
async def _ari_bad(w: World, s: Any) -> httpx.Response:
    return await _get(w, "/acme/renewal-info/not-a-cert-id")


@case("ari-unknown-certid", 404, "malformed")
async def _ari_unknown(w: World, s: Any) -> httpx.Response:
    serial = b"\x01" + os.urandom(15)  # positive, so a well-formed CertID
    return await _get(w, "/acme/renewal-info/" + jws.b64encode(os.urandom(20)) + "."
                      + jws.b64encode(serial))


@case("star-unknown-order", 404, "malformed")
async def _star_unknown(w: World, s: Any) -> httpx.Response:
    return await _get(w, "/acme/star/nope")


@case("star-get-of-plain-order", 404, "malformed")
async def _star_plain(w: World, s: Any) -> httpx.Response:
    return await _get(w, "/acme/star/" + w.refs["plain_order"].rsplit("/", 1)[1])


@case("unknown-path", 404, "malformed")
async def _unknown(w: World, s: Any) -> httpx.Response:
    return await _get(w, "/acme/../../etc/passwd")


@case("directory-post", 405, "malformed")
async def _dir_post(w: World, s: Any) -> httpx.Response:
    return await w.http.post(w.base + "/directory", content=b"{}",
                             headers={"Content-Type": JOSE})


@case("new-nonce-post", 405, "malformed")
async def _nonce_post(w: World, s: Any) -> httpx.Response:
    return await w.http.post(w.refs["new_nonce"], content=b"{}", headers={"Content-Type": JOSE})


GENERIC_IDS = [f"{ep.name}:{m.name}" for ep in ENDPOINTS for m in MUTATIONS]
