"""AcmeClient's certdepot extensions against the real repository ASGI app (in process).

Uses the repository's own test kit (tests/unit/repository/repository_testkit.py) to build
an app over in-memory SQLite with tenants, a local CA and a delegation.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "repository"))
from repository_testkit import BASE, make_config  # type: ignore[import-not-found]

from certdepot.acme import crypto, csr_template
from certdepot.acme.client import AcmeClient, AcmeClientError
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.state import Repo
from certdepot.repository.tenants import EabCredentials, create_tenant

WEB = ["example.test", "www.example.test"]
TEMPLATE: dict[str, Any] = {
    "keyTypes": [
        {
            "PublicKeyType": "id-ecPublicKey",
            "namedCurve": "secp256r1",
            "SignatureType": "ecdsa-with-SHA256",
        }
    ],
    "extensions": {"subjectAltName": {"DNS": ["**"]}},
}


@pytest.fixture
async def repository() -> AsyncIterator[
    tuple[Repo, httpx.ASGITransport, dict[str, EabCredentials]]
]:
    config = make_config(
        issuers=[
            {"name": "local", "type": "local-ca", "lifetime": "2d"},
            {"name": "imported", "type": "imported"},
        ],
        tenants=[
            {
                "name": "team-a",
                "download": ["web"],
                "issue": ["*.a.example.test"],
                "delegations": [
                    {
                        "name": "cdn",
                        "csrTemplate": TEMPLATE,
                        "namePatterns": ["cdn-*.example.test"],
                        "maxLifetime": "7d",
                        "issuer": "local",
                    }
                ],
            },
            {"name": "team-b", "download": [], "issue": ["*.b.example.test"]},
        ],
    )
    repo = build_repo(config)
    creds = {t.name: create_tenant(repo.store, repo.vault, t.name) for t in repo.config.tenants}
    await renewal.run_once(repo)
    yield repo, httpx.ASGITransport(app=create_app(repo)), creds
    for task in list(repo.tasks):
        task.cancel()
    repo.store.close()


async def _client(transport: httpx.ASGITransport, creds: EabCredentials) -> AcmeClient:
    client = AcmeClient(
        f"{BASE}/directory", crypto.generate_private_key(), transport=transport, poll_interval=0.01
    )
    await client.new_account(eab=(creds.kid, creds.hmac_key))
    return client


async def test_download_certificate_from_the_repository(
    repository: tuple[Repo, httpx.ASGITransport, dict[str, EabCredentials]],
) -> None:
    _, transport, creds = repository
    acme = await _client(transport, creds["team-a"])
    async with acme:
        chain, key = await acme.download_certificate(list(reversed(WEB)))
        certs = crypto.parse_pem_chain(chain)
        assert sorted(crypto.certificate_dns_names(certs[0])) == WEB
        assert crypto.public_key_matches(key, certs[0])
        # Pinning to the chain's own top certificate must pass; to a stranger must fail.
        await acme.download_certificate(WEB, pin_root=certs[-1])
        stranger = crypto.load_certificate(
            chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        )
        with pytest.raises(AcmeClientError) as exc:
            await acme.download_certificate(WEB, pin_root=stranger)
        assert exc.value.short_type.endswith("untrustedChain")


async def test_download_refused_for_other_tenant_and_wrong_name_set(
    repository: tuple[Repo, httpx.ASGITransport, dict[str, EabCredentials]],
) -> None:
    _, transport, creds = repository
    async with await _client(transport, creds["team-b"]) as acme:
        with pytest.raises(AcmeProblem) as exc:
            await acme.download_certificate(WEB)
        assert exc.value.short_type == "unauthorized"
    async with await _client(transport, creds["team-a"]) as acme:
        with pytest.raises(AcmeProblem) as exc:
            await acme.download_certificate(["www.example.test"])
        assert exc.value.short_type == "rejectedIdentifier"


async def test_delegated_order_against_the_repository(
    repository: tuple[Repo, httpx.ASGITransport, dict[str, EabCredentials]],
) -> None:
    _, transport, creds = repository
    async with await _client(transport, creds["team-a"]) as acme:
        assert (await acme.directory()).meta.delegation_enabled
        urls = await acme.list_delegations()
        assert len(urls) == 1
        delegation = await acme.get_delegation(urls[0])
        assert delegation.csr_template == TEMPLATE
        key = crypto.generate_private_key()
        csr = csr_template.build_csr_for_template(
            delegation.csr_template, key, ["cdn-1.example.test"]
        )
        order = await acme.delegated_order(urls[0], csr)
        assert order.status == "valid" and order.certificate
        chains = await acme.fetch_certificate(order.certificate)
        assert crypto.public_key_matches(key, chains.leaf)
        assert crypto.certificate_dns_names(chains.leaf) == ["cdn-1.example.test"]
        bad = csr_template.build_csr_for_template(
            delegation.csr_template, key, ["elsewhere.example.test"]
        )
        with pytest.raises(AcmeProblem) as exc:
            await acme.delegated_order(urls[0], bad)
        assert exc.value.short_type in ("rejectedIdentifier", "badCSR"), exc.value
        rsa = crypto.build_csr(crypto.generate_private_key("rsa-2048"), ["cdn-2.example.test"])
        with pytest.raises(AcmeProblem) as exc:
            await acme.delegated_order(urls[0], rsa)
        assert exc.value.short_type == "badCSR" and exc.value.subproblems, exc.value
