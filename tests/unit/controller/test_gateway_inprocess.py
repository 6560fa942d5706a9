"""The real reconcilers and ACME gateway against the repository's ASGI app, in process:
the whole download and delegation paths in about a second, without sockets or a cluster."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from certdepot.acme import crypto
from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.controller.gateway.acme_gateway import AcmeGateway
from certdepot.controller.kinds import account, delegated, download
from certdepot.controller.kinds.deps import Deps
from certdepot.controller.ops.metrics import Metrics
from certdepot.repository import renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.config import parse_config
from certdepot.repository.tenants import create_tenant

from .fakes import FakeKube

BASE = "https://repo.test"
NAMES = ["www.example.test", "example.test"]


class _PathLog(httpx.AsyncBaseTransport):
    """Records each request's method and path on the way to the in-process app."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def world() -> AsyncIterator[tuple[Deps, FakeKube, Any]]:
    os.environ["CERTDEPOT_TEST_KEK"] = base64.b64encode(os.urandom(32)).decode()
    repo = build_repo(
        parse_config(
            {
                "baseUrl": BASE,
                "listeners": {"http": {"address": "127.0.0.1:0"}},
                "storage": {"url": "sqlite://"},
                "keyEncryptionKey": {"env": "CERTDEPOT_TEST_KEK"},
                "issuers": [{"name": "local", "type": "local-ca", "lifetime": "2d"}],
                "certificates": [{"name": "web", "dnsNames": NAMES, "issuer": "local"}],
                "tenants": [
                    {
                        "name": "cluster",
                        "download": ["web"],
                        "delegations": [
                            {
                                "name": "edge",
                                "csrTemplate": P256_TLS_SERVER,
                                "namePatterns": ["cdn-*.example.test"],
                                "maxLifetime": "1d",
                                "issuer": "local",
                            }
                        ],
                    }
                ],
            }
        )
    )
    creds = create_tenant(repo.store, repo.vault, "cluster")
    await renewal.run_once(repo)
    metrics = Metrics()
    gateway = AcmeGateway(metrics, transport=_PathLog(httpx.ASGITransport(app=create_app(repo))))
    kube = FakeKube()
    kube.secrets[("team-a", "eab")] = {
        "metadata": {"name": "eab", "namespace": "team-a"},
        "type": "Opaque",
        "data": {"secret": base64.b64encode(creds.hmac_key.encode()).decode()},
    }
    kube.customs[("CertificateRepository", "team-a", "depot")] = {
        "kind": "CertificateRepository",
        "metadata": {"name": "depot", "namespace": "team-a", "uid": "u-depot", "generation": 1},
        "spec": {
            "url": f"{BASE}/directory",
            "externalAccountBinding": {"keyID": creds.kid, "keySecretRef": {"name": "eab"}},
        },
        "status": {},
    }
    yield Deps(kube=kube, gateway=gateway, metrics=metrics), kube, repo
    await gateway.aclose()
    for task in list(repo.tasks):
        task.cancel()
    repo.store.close()


async def register(deps: Deps, kube: FakeKube) -> dict[str, Any]:
    body = kube.customs[("CertificateRepository", "team-a", "depot")]
    step = await account.reconcile(body, "CertificateRepository", deps)
    await kube.patch_status("CertificateRepository", "team-a", "depot", step.status)
    return step.status


async def test_register_then_download(world: tuple[Deps, FakeKube, Any]) -> None:
    deps, kube, _ = world
    status = await register(deps, kube)
    assert status["conditions"][0]["status"] == "True", status
    assert status["directory"]["downloadEnabled"] and status["delegations"]
    again = await register(deps, kube)  # the same key finds the same account
    assert again["accountURL"] == status["accountURL"]
    body = {
        "kind": "CertificateDownload",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u-web", "generation": 1},
        "spec": {"repositoryRef": {"name": "depot"}, "dnsNames": NAMES, "secretName": "web-tls"},
        "status": {},
    }
    step = await download.reconcile(body, deps)
    assert step.status["conditions"][0]["reason"] == "Downloaded", step.status
    data = kube.secrets[("team-a", "web-tls")]["data"]
    chain = crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]))
    key = crypto.load_private_key(base64.b64decode(data["tls.key"]))
    assert crypto.public_key_matches(key, chain[0]) and "ca.crt" in data
    # ARI was asked on the next step, and the window is not open: nothing is fetched again.
    body["status"] = step.status
    writes = kube.writes
    step = await download.reconcile(body, deps)
    assert step.status["conditions"][0]["reason"] == "UpToDate" and kube.writes == writes
    assert deps.metrics.acme_requests.labels("POST", "201")._value.get() > 0


async def test_delegated_via_the_repository(world: tuple[Deps, FakeKube, Any]) -> None:
    deps, kube, _ = world
    await register(deps, kube)
    body: dict[str, Any] = {
        "kind": "DelegatedCertificate",
        "metadata": {"name": "cdn", "namespace": "team-a", "uid": "u-cdn", "generation": 1},
        "spec": {
            "repositoryRef": {"name": "depot"},
            "delegation": "edge",
            "dnsNames": ["cdn-1.example.test"],
            "secretName": "cdn-tls",
            "duration": "12h",
            "privateKey": {"algorithm": "ECDSA", "encoding": "PKCS8"},
        },
        "status": {},
    }
    step = await delegated.reconcile(body, deps)
    assert step.status["conditions"][0]["reason"] == "Issued", step.status
    data = kube.secrets[("team-a", "cdn-tls")]["data"]
    leaf = crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]))[0]
    assert crypto.certificate_dns_names(leaf) == ["cdn-1.example.test"]
    body["spec"]["dnsNames"] = ["www.example.test"]
    body["metadata"]["generation"] = 2
    body["spec"]["secretName"] = "other-tls"
    cond = (await delegated.reconcile(body, deps)).status["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "RejectedIdentifier")


async def test_downloads_reuse_one_client_per_repository_account(
    world: tuple[Deps, FakeKube, Any],
) -> None:
    """Directory and newNonce once for all downloads and ARI checks of one account, not
    once per call; a changed repository resource (here its URL) gets its own client."""
    deps, kube, _ = world
    await register(deps, kube)
    assert isinstance(deps.gateway, AcmeGateway)
    log = deps.gateway._transport
    assert isinstance(log, _PathLog)
    log.requests.clear()
    for i in range(3):
        body: dict[str, Any] = {
            "kind": "CertificateDownload",
            "metadata": {"name": f"web{i}", "namespace": "team-a", "uid": f"u{i}",
                         "generation": 1},
            "spec": {"repositoryRef": {"name": "depot"}, "dnsNames": NAMES,
                     "secretName": f"web{i}-tls"},
            "status": {},
        }
        step = await download.reconcile(body, deps)
        assert step.status["conditions"][0]["reason"] == "Downloaded", step.status
        body["status"] = step.status
        assert (await download.reconcile(body, deps)).status["conditions"][0][
            "reason"] == "UpToDate"
    assert log.requests.count(("GET", "/directory")) == 1, log.requests
    assert sum(1 for _, p in log.requests if p.endswith("new-nonce")) <= 1, log.requests
    # The same repository under another URL (a changed spec.url) is another client.
    repo_body = kube.customs[("CertificateRepository", "team-a", "depot")]
    repo_body["spec"]["url"] = f"{BASE}/directory?changed=1"
    deps.objects.observe("CertificateRepository", "MODIFIED", repo_body)  # as the watch would
    again: dict[str, Any] = {
        "kind": "CertificateDownload",
        "metadata": {"name": "web9", "namespace": "team-a", "uid": "u9", "generation": 1},
        "spec": {"repositoryRef": {"name": "depot"}, "dnsNames": NAMES, "secretName": "w9"},
        "status": {},
    }
    await download.reconcile(again, deps)
    assert log.requests.count(("GET", "/directory")) == 2, log.requests
