"""In-process repository fixtures: the ASGI app over an in-memory SQLite store, and a small
signing client so these tests check the server's wire behaviour byte for byte."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from certdepot.acme import crypto, eab, jws
from certdepot.repository.config import Config, parse_config
from certdepot.repository.state import Repo
from certdepot.repository.tenants import EabCredentials

BASE = "https://repo.test"
KEK = base64.b64encode(os.urandom(32)).decode()


def base_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "baseUrl": BASE,
        "listeners": {"http": {"address": "127.0.0.1:0"}},
        "storage": {"url": "sqlite://"},
        "keyEncryptionKey": {"env": "CERTDEPOT_TEST_KEK"},
        "issuers": [{"name": "local", "type": "local-ca", "lifetime": "2d"},
                    {"name": "imported", "type": "imported"}],
        "defaultIssuer": "local",
        "certificates": [
            {"name": "web", "dnsNames": ["www.example.test", "example.test"],
             "issuer": "local", "lifetime": "3d"},
            {"name": "proofed", "dnsNames": ["proof.example.test"], "issuer": "local",
             "downloadByProof": True},
            {"name": "secret", "dnsNames": ["secret.example.test"], "issuer": "local"},
        ],
        "tenants": [
            {"name": "team-a", "download": ["web"], "issue": ["*.a.example.test",
                                                           "app.example.test"]},
            {"name": "team-b", "download": [], "issue": ["*.b.example.test"]},
        ],
    }
    cfg.update(overrides)
    return cfg


@dataclass
class Client:
    """Minimal ACME client for wire-level tests (the real one is certdepot.acme.client)."""

    http: httpx.AsyncClient
    key: crypto.PrivateKey = field(default_factory=lambda: crypto.generate_private_key())
    kid: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)

    async def dir(self) -> dict[str, Any]:
        if not self.directory:
            self.directory = (await self.http.get(f"{BASE}/directory")).json()
        return self.directory

    async def nonce(self) -> str:
        r = await self.http.head((await self.dir())["newNonce"])
        return r.headers["Replay-Nonce"]

    async def post(self, url: str, payload: Any, *, use_jwk: bool = False,
                   nonce: str | None = None, key: crypto.PrivateKey | None = None,
                   mutate: Callable[[dict[str, str]], None] | None = None) -> httpx.Response:
        body = jws.sign(payload, key or self.key, url=url, nonce=nonce or await self.nonce(),
                        kid=None if use_jwk else self.kid)
        if mutate:
            mutate(body)
        return await self.http.post(url, content=json.dumps(body),
                                    headers={"Content-Type": "application/jose+json"})

    async def register(self, creds: EabCredentials | None) -> httpx.Response:
        d = await self.dir()
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if creds is not None:
            payload["externalAccountBinding"] = eab.create_eab(
                self.key, creds.kid, creds.hmac_key, d["newAccount"])
        r = await self.post(d["newAccount"], payload, use_jwk=True)
        if r.status_code in (200, 201):
            self.kid = r.headers["Location"]
        return r

    async def new_order(self, names: list[str], **extra: Any) -> httpx.Response:
        return await self.post((await self.dir())["newOrder"], {
            "identifiers": [{"type": "dns", "value": n} for n in names], **extra})


@dataclass
class Env:
    repo: Repo
    http: httpx.AsyncClient
    creds: dict[str, EabCredentials]

    def client(self) -> Client:
        return Client(self.http)

    async def tenant_client(self, tenant: str) -> Client:
        c = self.client()
        r = await c.register(self.creds[tenant])
        assert r.status_code == 201, r.text
        return c


def make_config(**overrides: Any) -> Config:
    os.environ["CERTDEPOT_TEST_KEK"] = KEK
    return parse_config(base_config(**overrides))


