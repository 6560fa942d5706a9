"""The account key is read once per unchanged repository object, not once per reconcile."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from certdepot.acme import crypto
from certdepot.controller.core.settings import Settings
from certdepot.controller.kube import lookup

from .fakes import FakeKube

REF = {"name": "depot"}


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.secret_gets = 0

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.secret_gets += 1
        return await super().get_secret(namespace, name)


def put_key(kube: FakeKube, name: str) -> crypto.PrivateKey:
    key = crypto.generate_private_key()
    kube.secrets[("team-a", name)] = {
        "metadata": {"name": name, "namespace": "team-a"},
        "type": "Opaque",
        "data": {"account.key": base64.b64encode(crypto.private_key_to_pem(key)).decode()},
    }
    return key


def put_repo(kube: FakeKube, version: str | None, key_secret: str = "depot-key") -> None:
    meta: dict[str, Any] = {"name": "depot", "namespace": "team-a", "uid": "u-1"}
    if version is not None:
        meta["resourceVersion"] = version
    kube.customs[("CertificateRepository", "team-a", "depot")] = {
        "metadata": meta,
        "spec": {"url": "https://repo.test/acme/directory"},
        "status": {
            "accountURL": "https://repo.test/acme/acct/1",
            "accountKeySecretName": key_secret,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pem(key: crypto.PrivateKey) -> bytes:
    return crypto.private_key_to_pem(key)


async def test_unchanged_repository_reads_its_key_once() -> None:
    kube = CountingKube()
    key = put_key(kube, "depot-key")
    put_repo(kube, "7")
    for _ in range(3):
        endpoint = await lookup.resolve(kube, REF, "team-a", Settings())
        assert pem(endpoint.account_key) == pem(key)
    assert kube.secret_gets == 1


async def test_changed_repository_reads_the_key_again() -> None:
    kube = CountingKube()
    put_key(kube, "depot-key")
    put_repo(kube, "7")
    await lookup.resolve(kube, REF, "team-a", Settings())
    new_key = put_key(kube, "depot-key-2")
    put_repo(kube, "8", key_secret="depot-key-2")
    endpoint = await lookup.resolve(kube, REF, "team-a", Settings())
    assert pem(endpoint.account_key) == pem(new_key)
    assert kube.secret_gets == 2


async def test_cached_key_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = CountingKube()
    put_key(kube, "depot-key")
    put_repo(kube, "7")
    monkeypatch.setattr(lookup, "KEY_CACHE_SECONDS", 0.0)
    await lookup.resolve(kube, REF, "team-a", Settings())
    replaced = put_key(kube, "depot-key")  # rotated in place, repository unchanged
    endpoint = await lookup.resolve(kube, REF, "team-a", Settings())
    assert pem(endpoint.account_key) == pem(replaced)
    assert kube.secret_gets == 2


async def test_no_resource_version_means_no_caching() -> None:
    kube = CountingKube()
    put_key(kube, "depot-key")
    put_repo(kube, None)
    await lookup.resolve(kube, REF, "team-a", Settings())
    await lookup.resolve(kube, REF, "team-a", Settings())
    assert kube.secret_gets == 2


async def test_missing_key_secret_is_never_cached() -> None:
    kube = CountingKube()
    put_repo(kube, "7")
    for _ in range(2):
        with pytest.raises(Exception, match="account key Secret not found"):
            await lookup.resolve(kube, REF, "team-a", Settings())
    put_key(kube, "depot-key")
    await lookup.resolve(kube, REF, "team-a", Settings())
    assert kube.secret_gets == 3


async def test_concurrent_misses_read_the_key_once() -> None:
    """A rollout's first steps all miss the cache at once: they share one GET."""
    import asyncio

    class SlowKube(CountingKube):
        async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
            await asyncio.sleep(0.02)
            return await super().get_secret(namespace, name)

    kube = SlowKube()
    key = put_key(kube, "depot-key")
    put_repo(kube, "7")
    endpoints = await asyncio.gather(
        *(lookup.resolve(kube, REF, "team-a", Settings()) for _ in range(20))
    )
    assert {pem(e.account_key) for e in endpoints} == {pem(key)}
    assert kube.secret_gets == 1
