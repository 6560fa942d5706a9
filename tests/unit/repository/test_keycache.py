"""The managed certificates' key cache (certstore.KeyCache): downloads after the first
do not open the sealed key again, a renewed certificate's new key is what leaves, and the
policy is asked on every fetch all the same."""

from __future__ import annotations

import os
from typing import Any

import pytest
from repository_testkit import Env, base_config, make_config
from test_download import WEB, _download, _obtain

from certdepot.acme import crypto, keywrap
from certdepot.repository import certstore, renewal
from certdepot.repository.keyvault import KeyVault


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The certificate ids whose sealed key was opened."""
    calls: list[str] = []
    real = certstore.open_key

    def counting(vault: KeyVault, row: dict[str, Any]) -> crypto.PrivateKey:
        calls.append(row["id"])
        return real(vault, row)

    monkeypatch.setattr(certstore, "open_key", counting)
    return calls


async def test_second_download_uses_the_cached_key(env: Env, opened: list[str]) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    _, pem1, key1 = await _download(c, WEB)
    _, pem2, key2 = await _download(c, WEB)
    leaf = crypto.parse_pem_chain(pem1)[0]
    assert pem1 == pem2
    assert crypto.public_key_matches(key1, leaf) and crypto.public_key_matches(key2, leaf)
    assert len(opened) == 1 and len(env.repo.key_cache) == 1


async def test_renewed_certificate_delivers_its_new_key(env: Env, opened: list[str]) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    _, pem1, _ = await _download(c, WEB)
    renewal.request_renewal(env.repo.store, "web")
    await renewal.run_once(env.repo)
    _, pem2, key2 = await _download(c, WEB)
    leaf1, leaf2 = crypto.parse_pem_chain(pem1)[0], crypto.parse_pem_chain(pem2)[0]
    assert leaf1.serial_number != leaf2.serial_number
    assert crypto.public_key_matches(key2, leaf2)
    assert not crypto.public_key_matches(key2, leaf1)
    assert len(set(opened)) == 2  # the new certificate's key was opened, not served stale


async def test_withdrawn_grant_refused_although_the_key_is_cached(env: Env) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    order, _, _ = await _download(c, WEB)
    assert len(env.repo.key_cache) == 1
    tenants = [t for t in base_config()["tenants"] if t["name"] != "team-a"]
    env.repo.config = make_config(tenants=[*tenants, {"name": "team-a", "download": []}])
    r = await c.post(order["private-key"], None)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized"), r.text
    assert "eyJ" not in r.text  # no JWE in the refusal


def _sealed(vault: KeyVault, cert_id: str) -> tuple[dict[str, Any], crypto.PrivateKey]:
    key = crypto.generate_private_key("ec-p256")
    blob = vault.seal(crypto.private_key_to_pkcs8_der(key), certstore.key_label(cert_id))
    return {"id": cert_id, "serial": f"{cert_id}-serial", "key": blob}, key


def test_bounded_least_recently_used_first_out() -> None:
    vault = KeyVault(os.urandom(32))
    cache = certstore.KeyCache()
    rows = [_sealed(vault, f"c{i}") for i in range(3)]
    for row, key in rows[:2]:
        assert cache.pkcs8(vault, row, 2) == crypto.private_key_to_pkcs8_der(key)
    cache.pkcs8(vault, rows[0][0], 2)  # c0 used again: c1 is now the oldest
    cache.pkcs8(vault, rows[2][0], 2)
    assert len(cache) == 2
    assert set(cache._entries) == {("c0", "c0-serial"), ("c2", "c2-serial")}


def test_zero_keeps_nothing() -> None:
    vault = KeyVault(os.urandom(32))
    cache = certstore.KeyCache()
    row, key = _sealed(vault, "c0")
    assert cache.pkcs8(vault, row, 0) == crypto.private_key_to_pkcs8_der(key)
    assert len(cache) == 0


def test_wrap_pkcs8_equals_wrap_private_key() -> None:
    key = crypto.generate_private_key("ec-p256")
    eph, jwk = keywrap.generate_ephemeral()
    token = keywrap.wrap_pkcs8(crypto.private_key_to_pkcs8_der(key), jwk)
    assert crypto.private_key_to_pkcs8_der(keywrap.unwrap_private_key(token, eph)) == \
        crypto.private_key_to_pkcs8_der(key)
