"""Hostile input against the repository's ASGI app in process (see hostile.py for the table
and for what "the store is unchanged" means)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import hostile_input  # noqa: F401  (its cases join hostile.CASES)
import httpx
import pytest
from hostile import (
    CASES,
    ENDPOINTS,
    KNOWN,
    MUTATIONS,
    Case,
    Endpoint,
    Mutation,
    World,
    build_world,
    certificates_config,
    run_case,
    run_mutation,
    tenants_config,
)
from repository_testkit import BASE, make_config

from certdepot.repository import renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.tenants import create_tenant


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    repo = build_repo(make_config(tenants=tenants_config(), certificates=certificates_config()))
    await renewal.run_once(repo)
    app = create_app(repo)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    creds = {t.name: create_tenant(repo.store, repo.vault, t.name) for t in repo.config.tenants}
    w = await build_world(http, BASE, repo.store, creds)
    yield w
    await http.aclose()
    for t in list(repo.tasks):
        t.cancel()
    repo.store.close()


def _mark(name: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.xfail(strict=True, reason=KNOWN[name])] if name in KNOWN else []


@pytest.mark.parametrize(("m", "ep"), [
    pytest.param(m, ep, id=f"{ep.name}:{m.name}", marks=_mark(f"{ep.name}:{m.name}"))
    for ep in ENDPOINTS for m in MUTATIONS])
async def test_generic_jws_attack(world: World, m: Mutation, ep: Endpoint) -> None:
    await run_mutation(world, m, ep)


@pytest.mark.parametrize("c", [pytest.param(c, id=c.name, marks=_mark(c.name)) for c in CASES])
async def test_semantic_attack(world: World, c: Case) -> None:
    await run_case(world, c)


def test_table_size() -> None:
    assert len(ENDPOINTS) * len(MUTATIONS) + len(CASES) >= 150


async def test_issued_leaf_is_never_a_ca(world: World) -> None:
    """A CSR asking for CA:true gets a certificate, but never a CA certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from certdepot.acme import crypto, jws

    r = await world.a.new_order(["ca.a.example.test"])
    assert r.status_code == 201, r.text
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("ca.a.example.test")]),
                          critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(crypto.generate_private_key(), hashes.SHA256()))  # type: ignore[arg-type]
    f = await world.a.post(r.json()["finalize"], {"csr": jws.b64encode(
        csr.public_bytes(serialization.Encoding.DER))})
    assert f.status_code in (200, 400), f.text
    if f.status_code == 200:
        pem = (await world.a.post(f.json()["certificate"], None)).text
        leaf = crypto.parse_pem_chain(pem)[0]
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
