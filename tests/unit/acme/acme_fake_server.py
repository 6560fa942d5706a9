"""A small, scriptable ACME server (Starlette) for client unit tests.

It verifies every JWS with certdepot.acme.jws, tracks nonces and lets a test inject faults:
rejected nonces, Retry-After values, 500s without a problem document, slow answers.
It is a test double for wire behaviour, not a CA: certificates come from acme_pki.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from acme_pki import make_ca, make_leaf, pem
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certdepot.acme import crypto, eab, jws, keywrap
from certdepot.acme.problems import AcmeProblem

BASE = "https://fake.test"


@dataclass
class FakeAcme:
    """State and knobs of the fake server."""

    eab_keys: dict[str, bytes] = field(default_factory=dict)
    reject_nonces: int = 0  # reject this many upcoming requests with badNonce
    order_polls_until_valid: int = 2
    retry_after: str | None = "0"
    slow_seconds: float = 0.0
    download_enabled: bool = True
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    polls: dict[str, int] = field(default_factory=dict)
    key_owner: dict[str, str] = field(default_factory=dict)  # thumbprint -> account url
    revoked: list[int] = field(default_factory=list)
    download_key: crypto.PrivateKey | None = None
    wrong_download_key: bool = False

    def __post_init__(self) -> None:
        self.root = make_ca("fake root")
        self.alt_root = make_ca("fake alternate root")
        self.inter = make_ca("fake intermediate", self.root)

    # -- plumbing --------------------------------------------------------------------------

    def _nonce(self) -> str:
        value = jws.b64encode(next(self.counter).to_bytes(8, "big"))
        self.nonces.add(value)
        return value

    def _reply(
        self, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        hdrs = {"Replay-Nonce": self._nonce(), **(headers or {})}
        if isinstance(body, str):
            return Response(
                body, status, headers=hdrs, media_type="application/pem-certificate-chain"
            )
        return JSONResponse(body, status, headers=hdrs)

    def _problem(self, problem: AcmeProblem) -> Response:
        return JSONResponse(
            problem.to_json(),
            problem.status or 400,
            headers={"Replay-Nonce": self._nonce()},
            media_type="application/problem+json",
        )

    async def _verify(
        self, request: Request, *, jwk_ok: bool = False
    ) -> tuple[dict[str, Any] | None, str | None, Any]:
        body = await request.body()
        parsed = jws.parse_jws(body)
        parsed.check_url(str(request.url))
        if parsed.nonce not in self.nonces:
            raise AcmeProblem("badNonce", "unknown nonce")
        self.nonces.discard(parsed.nonce)
        if self.reject_nonces > 0:
            self.reject_nonces -= 1
            raise AcmeProblem("badNonce", "nonce rejected by the test")
        if parsed.jwk is not None:
            if not jwk_ok:
                raise AcmeProblem("malformed", "this resource needs kid")
            parsed.verify(jws.public_key_from_jwk(parsed.jwk))
            return parsed.payload_json(), None, parsed
        account = self.accounts.get(parsed.kid or "")
        if account is None:
            raise AcmeProblem("accountDoesNotExist", "no such account")
        parsed.verify(jws.public_key_from_jwk(account["jwk"]))
        return parsed.payload_json(), parsed.kid, parsed

    def app(self) -> Starlette:
        def guard(handler: Any) -> Any:
            async def wrapped(request: Request) -> Response:
                self.requests.append((request.method, request.url.path))
                try:
                    return await handler(request)  # type: ignore[no-any-return]
                except AcmeProblem as problem:
                    return self._problem(problem)

            return wrapped

        routes = [
            Route("/dir", guard(self.directory), methods=["GET"]),
            Route("/nonce", guard(self.new_nonce), methods=["HEAD", "GET"]),
            Route("/new-acct", guard(self.new_account), methods=["POST"]),
            Route("/acct/{id}", guard(self.account), methods=["POST"]),
            Route("/key-change", guard(self.key_change), methods=["POST"]),
            Route("/new-order", guard(self.new_order), methods=["POST"]),
            Route("/order/{id}", guard(self.order), methods=["POST"]),
            Route("/authz/{id}", guard(self.authz), methods=["POST"]),
            Route("/chall/{id}", guard(self.challenge), methods=["POST"]),
            Route("/finalize/{id}", guard(self.finalize), methods=["POST"]),
            Route("/cert/{id}", guard(self.cert), methods=["POST"]),
            Route("/cert/{id}/alt", guard(self.cert_alt), methods=["POST"]),
            Route("/key/{id}", guard(self.private_key), methods=["POST"]),
            Route("/revoke", guard(self.revoke), methods=["POST"]),
            Route("/renewal-info/{cid}", guard(self.renewal_info), methods=["GET"]),
            Route("/delegations", guard(self.delegations), methods=["POST"]),
            Route("/delegation/{id}", guard(self.delegation), methods=["POST"]),
            Route("/boom", guard(self.boom), methods=["GET", "POST"]),
            Route("/slow", guard(self.slow), methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # -- resources -------------------------------------------------------------------------

    async def directory(self, request: Request) -> Response:
        meta: dict[str, Any] = {
            "profiles": {"default": "90 days", "shortlived": "6 days"},
            "externalAccountRequired": bool(self.eab_keys),
            "delegation-enabled": True,
        }
        if self.download_enabled:
            meta["download-enabled"] = True
        return JSONResponse(
            {
                "newNonce": f"{BASE}/nonce",
                "newAccount": f"{BASE}/new-acct",
                "newOrder": f"{BASE}/new-order",
                "revokeCert": f"{BASE}/revoke",
                "keyChange": f"{BASE}/key-change",
                "renewalInfo": f"{BASE}/renewal-info",
                "meta": meta,
            }
        )

    async def new_nonce(self, request: Request) -> Response:
        return Response(
            status_code=200, headers={"Replay-Nonce": self._nonce(), "Cache-Control": "no-store"}
        )

    async def new_account(self, request: Request) -> Response:
        payload, _, parsed = await self._verify(request, jwk_ok=True)
        assert payload is not None
        thumb = jws.thumbprint_b64(parsed.jwk)
        existing = self.key_owner.get(thumb)
        if existing:
            return self._reply(self.accounts[existing]["doc"], 200, {"Location": existing})
        if payload.get("onlyReturnExisting"):
            raise AcmeProblem("accountDoesNotExist", "no account for this key")
        if self.eab_keys:
            binding = payload.get("externalAccountBinding")
            if binding is None:
                raise AcmeProblem("externalAccountRequired", "EAB required")
            eab.verify_eab(
                binding,
                account_jwk=parsed.jwk,
                url=f"{BASE}/new-acct",
                hmac_key_for=self.eab_keys.get,
            )
        url = f"{BASE}/acct/{next(self.counter)}"
        doc = {
            "status": "valid",
            "contact": payload.get("contact", []),
            "orders": url + "/orders",
            "delegations": f"{BASE}/delegations",
        }
        self.accounts[url] = {"jwk": parsed.jwk, "doc": doc}
        self.key_owner[thumb] = url
        return self._reply(doc, 201, {"Location": url})

    async def account(self, request: Request) -> Response:
        payload, kid, _ = await self._verify(request)
        if kid != str(request.url):
            raise AcmeProblem("unauthorized", "not your account")
        doc = self.accounts[kid]["doc"]
        if payload:
            if "contact" in payload:
                doc["contact"] = payload["contact"]
            if payload.get("status") == "deactivated":
                doc["status"] = "deactivated"
        return self._reply(doc)

    async def key_change(self, request: Request) -> Response:
        payload, kid, _ = await self._verify(request)
        assert payload is not None and kid is not None
        inner = jws.parse_jws(payload, require_nonce=False)
        inner.check_url(str(request.url))
        new_jwk = inner.jwk
        assert new_jwk is not None
        inner.verify(jws.public_key_from_jwk(new_jwk))
        body = inner.payload_json() or {}
        if body.get("account") != kid or body.get("oldKey") != self.accounts[kid]["jwk"]:
            raise AcmeProblem("malformed", "inner payload does not match")
        old = jws.thumbprint_b64(self.accounts[kid]["jwk"])
        self.key_owner.pop(old, None)
        self.key_owner[jws.thumbprint_b64(new_jwk)] = kid
        self.accounts[kid]["jwk"] = new_jwk
        return self._reply({})

    async def new_order(self, request: Request) -> Response:
        payload, kid, _ = await self._verify(request)
        assert payload is not None
        if payload.get("profile") not in (None, "default", "shortlived"):
            raise AcmeProblem("invalidProfile", f"unknown profile {payload['profile']!r}")
        oid = str(next(self.counter))
        delegated = "delegation" in payload
        order: dict[str, Any] = {
            **{k: v for k, v in payload.items() if k != "identifiers"},
            "status": "ready" if delegated or payload.get("download") else "pending",
            "identifiers": payload["identifiers"],
            "authorizations": []
            if delegated or payload.get("download")
            else [f"{BASE}/authz/{oid}"],
            "finalize": f"{BASE}/finalize/{oid}",
        }
        self.orders[oid] = {
            "doc": order,
            "account": kid,
            "authz": "pending",
            "names": [i["value"] for i in payload["identifiers"]],
        }
        return self._reply(order, 201, {"Location": f"{BASE}/order/{oid}"})

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}

    async def order(self, request: Request) -> Response:
        await self._verify(request)
        oid = request.path_params["id"]
        state = self.orders[oid]
        doc = state["doc"]
        if doc["status"] == "processing":
            self.polls[oid] = self.polls.get(oid, 0) + 1
            if self.polls[oid] >= self.order_polls_until_valid:
                doc["status"] = "valid"
                doc["certificate"] = f"{BASE}/cert/{oid}"
                if doc.get("download"):
                    doc["private-key"] = f"{BASE}/key/{oid}"
        return self._reply(doc, 200, self._retry())

    async def authz(self, request: Request) -> Response:
        await self._verify(request)
        oid = request.path_params["id"]
        state = self.orders[oid]
        return self._reply(
            {
                "status": state["authz"],
                "identifier": state["doc"]["identifiers"][0],
                "challenges": [
                    {
                        "type": "http-01",
                        "url": f"{BASE}/chall/{oid}",
                        "status": state["authz"],
                        "token": "tok" + "A" * 40,
                    }
                ],
            },
            200,
            self._retry(),
        )

    async def challenge(self, request: Request) -> Response:
        await self._verify(request)
        state = self.orders[request.path_params["id"]]
        state["authz"] = "valid"
        state["doc"]["status"] = "ready"
        return self._reply(
            {"type": "http-01", "url": str(request.url), "status": "processing", "token": "t"}
        )

    async def finalize(self, request: Request) -> Response:
        payload, _, _ = await self._verify(request)
        assert payload is not None
        state = self.orders[request.path_params["id"]]
        if state["doc"]["status"] != "ready":
            raise AcmeProblem("orderNotReady", "order is not ready")
        if "ephemeral-jwk" in payload:
            state["ephemeral"] = keywrap.validate_ephemeral_jwk(payload["ephemeral-jwk"])
            self.download_key = crypto.generate_private_key()
            state["key"] = self.download_key
        else:
            csr = crypto.load_csr(jws.b64decode(payload["csr"]))
            if sorted(crypto.csr_dns_names(csr)) != sorted(state["names"]):
                raise AcmeProblem("badCSR", "CSR names differ from the order's identifiers")
            state["csr_key"] = csr.public_key()
        leaf_key = state.get("key") or crypto.generate_private_key()
        state["leaf"], _ = make_leaf(self.inter, state["names"], key=leaf_key)
        if "csr_key" in state:
            # Sign the CSR's key for real so key checks downstream make sense.
            state["leaf"] = _reissue_for(state["leaf"], state["csr_key"], self.inter)
        state["doc"]["status"] = "processing"
        return self._reply(
            state["doc"],
            200,
            {"Location": f"{BASE}/order/{request.path_params['id']}", **self._retry()},
        )

    async def cert(self, request: Request) -> Response:
        await self._verify(request)
        oid = request.path_params["id"]
        leaf = self.orders[oid]["leaf"]
        return self._reply(
            pem(leaf, self.inter[0]),
            200,
            {"Link": f'<{BASE}/cert/{oid}/alt>;rel="alternate", <{BASE}/dir>;rel="index"'},
        )

    async def cert_alt(self, request: Request) -> Response:
        await self._verify(request)
        leaf = self.orders[request.path_params["id"]]["leaf"]
        return self._reply(pem(leaf, self.alt_root[0]))

    async def private_key(self, request: Request) -> Response:
        _, kid, _ = await self._verify(request)
        state = self.orders[request.path_params["id"]]
        if kid != state["account"]:
            raise AcmeProblem("unauthorized", "not your order")
        key = crypto.generate_private_key() if self.wrong_download_key else state["key"]
        token = keywrap.wrap_private_key(key, state["ephemeral"])
        return Response(
            token, 200, headers={"Replay-Nonce": self._nonce()}, media_type="application/jose"
        )

    async def revoke(self, request: Request) -> Response:
        payload, _, _ = await self._verify(request, jwk_ok=True)
        assert payload is not None
        cert = crypto.load_certificate(jws.b64decode(payload["certificate"]))
        if cert.serial_number in self.revoked:
            raise AcmeProblem("alreadyRevoked", "already revoked")
        self.revoked.append(cert.serial_number)
        return self._reply({})

    async def renewal_info(self, request: Request) -> Response:
        cid = request.path_params["cid"]
        return JSONResponse(
            {
                "suggestedWindow": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
                "explanationURL": f"{BASE}/why/{cid}",
            },
            headers={"Retry-After": "3600"},
        )

    async def delegations(self, request: Request) -> Response:
        await self._verify(request)
        return self._reply({"delegations": [f"{BASE}/delegation/1"]})

    async def delegation(self, request: Request) -> Response:
        await self._verify(request)
        return self._reply(
            {
                "csr-template": {
                    "keyTypes": [
                        {
                            "PublicKeyType": "id-ecPublicKey",
                            "namedCurve": "secp256r1",
                            "SignatureType": "ecdsa-with-SHA256",
                        }
                    ],
                    "extensions": {"subjectAltName": {"DNS": ["**"]}},
                },
                "cname-map": {
                    "_acme-challenge.cdn.example.test": "_acme-challenge.dele.example.test"
                },
            }
        )

    async def boom(self, request: Request) -> Response:
        return Response("<html>upstream exploded</html>", 500, media_type="text/html")

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(self.slow_seconds)
        return JSONResponse({})


def _reissue_for(template: Any, public_key: Any, issuer: Any) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(public_key)
        .serial_number(template.serial_number)
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for ext in template.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(issuer[1], hashes.SHA256())


def to_json(body: Any) -> bytes:
    return json.dumps(body).encode()


__all__ = ["BASE", "FakeAcme", "serialization"]
