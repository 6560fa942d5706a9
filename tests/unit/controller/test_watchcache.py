"""Repository objects and namespace labels come from the watches; a miss is a GET."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from certdepot.acme import crypto
from certdepot.controller.core.errors import RepositoryNotAllowed
from certdepot.controller.core.settings import Settings
from certdepot.controller.kube import lookup
from certdepot.controller.kube.lookup import WatchCache

from .fakes import FakeKube

CLUSTER = "ClusterCertificateRepository"
REF = {"kind": CLUSTER, "name": "shared"}


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.repo_gets = 0
        self.ns_gets = 0
        self.gate: asyncio.Event | None = None

    async def get_custom(self, kind: str, namespace: str | None, name: str) -> Any:
        self.repo_gets += 1
        answer = await super().get_custom(kind, namespace, name)
        if self.gate is not None:
            await self.gate.wait()
        return answer

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        self.ns_gets += 1
        return await super().namespace_labels(namespace)


def cluster_repo(*, ready: bool = True, version: str = "1", env: str = "prod") -> dict[str, Any]:
    return {
        "metadata": {"name": "shared", "uid": "u-9", "resourceVersion": version},
        "spec": {
            "url": "https://repo.test/acme/directory",
            "namespaceSelector": {"matchLabels": {"env": env}},
        },
        "status": {
            "accountURL": "https://repo.test/acme/acct/9" if ready else None,
            "accountKeySecretName": "shared-key",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def setup() -> CountingKube:
    kube = CountingKube()
    key = crypto.generate_private_key()
    kube.secrets[("certdepot", "shared-key")] = {
        "metadata": {"name": "shared-key", "namespace": "certdepot"},
        "data": {"account.key": base64.b64encode(crypto.private_key_to_pem(key)).decode()},
    }
    kube.customs[(CLUSTER, "", "shared")] = cluster_repo()
    kube.namespaces["team-a"] = {"env": "prod"}
    return kube


def ns_body(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "team-a", "labels": labels}}


async def test_watched_objects_cost_no_get() -> None:
    kube = setup()
    cache = WatchCache()
    cache.observe(CLUSTER, "ADDED", cluster_repo())
    cache.observe("Namespace", "ADDED", ns_body({"env": "prod"}))
    for _ in range(5):
        await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    assert (kube.repo_gets, kube.ns_gets) == (0, 0)


async def test_a_miss_is_a_get_and_its_answer_is_kept() -> None:
    kube = setup()
    cache = WatchCache()
    for _ in range(3):
        await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    assert (kube.repo_gets, kube.ns_gets) == (1, 1)


async def test_without_a_cache_every_lookup_is_a_get() -> None:
    kube = setup()
    for _ in range(2):
        await lookup.resolve(kube, REF, "team-a", Settings())
    assert (kube.repo_gets, kube.ns_gets) == (2, 2)


async def test_watched_label_change_is_seen_at_once() -> None:
    kube = setup()
    cache = WatchCache()
    cache.observe("Namespace", "ADDED", ns_body({"env": "prod"}))
    cache.observe(CLUSTER, "ADDED", cluster_repo())
    await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    cache.observe("Namespace", "MODIFIED", ns_body({"env": "dev"}))
    try:
        await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    except RepositoryNotAllowed:
        pass
    else:
        raise AssertionError("a namespace that lost its label still had access")


async def test_watched_repository_change_is_seen_at_once() -> None:
    kube = setup()
    cache = WatchCache()
    cache.observe("Namespace", "ADDED", ns_body({"env": "prod"}))
    cache.observe(CLUSTER, "ADDED", cluster_repo())
    await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    cache.observe(CLUSTER, "MODIFIED", cluster_repo(version="2", env="staging"))
    try:
        await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    except RepositoryNotAllowed:
        pass
    else:
        raise AssertionError("the new namespaceSelector was not applied")


async def test_cached_not_ready_repository_is_asked_again() -> None:
    # The repository reconcile wakes certificates right after patching Ready, maybe before
    # the watch delivers it: a not-ready cached copy must not fail them.
    kube = setup()
    cache = WatchCache()
    cache.observe(CLUSTER, "ADDED", cluster_repo(ready=False))
    endpoint = await lookup.resolve(kube, REF, "team-a", Settings(), cache)
    assert endpoint.account_url == "https://repo.test/acme/acct/9"
    assert kube.repo_gets == 1


async def test_deleted_object_is_a_miss() -> None:
    kube = setup()
    cache = WatchCache()
    cache.observe(CLUSTER, "ADDED", cluster_repo())
    cache.observe(CLUSTER, "DELETED", cluster_repo())
    del kube.customs[(CLUSTER, "", "shared")]
    assert await cache.repository(kube, CLUSTER, None, "shared") is None
    assert kube.repo_gets == 1


async def test_entries_expire_without_events() -> None:
    kube = setup()
    ticks = Ticks()
    cache = WatchCache(max_age=60.0, clock=ticks)
    cache.observe(CLUSTER, "ADDED", cluster_repo())
    await cache.repository(kube, CLUSTER, None, "shared")
    ticks.now += 60
    await cache.repository(kube, CLUSTER, None, "shared")
    assert kube.repo_gets == 1


async def test_a_get_does_not_overwrite_a_newer_watch_event() -> None:
    kube = setup()
    cache = WatchCache()
    kube.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.repository(kube, CLUSTER, None, "shared"))
    await asyncio.sleep(0)
    cache.observe(CLUSTER, "MODIFIED", cluster_repo(version="2", env="staging"))
    kube.gate.set()
    await lookup
    kube.gate = None
    got = await cache.repository(kube, CLUSTER, None, "shared")
    assert got is not None and got["metadata"]["resourceVersion"] == "2"
    assert kube.repo_gets == 1


async def test_a_get_begun_before_a_deletion_does_not_bring_it_back() -> None:
    kube = setup()
    cache = WatchCache()
    kube.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.repository(kube, CLUSTER, None, "shared"))
    await asyncio.sleep(0)
    cache.observe(CLUSTER, "DELETED", cluster_repo())
    kube.gate.set()
    await lookup
    assert len(cache) == 0


async def test_a_get_answer_is_kept_apart_from_the_callers_copy() -> None:
    kube = setup()
    cache = WatchCache()
    got = await cache.repository(kube, CLUSTER, None, "shared")
    assert got is not None
    got["spec"]["url"] = "https://changed.test/"
    again = await cache.repository(kube, CLUSTER, None, "shared")
    assert again is not None and again["spec"]["url"] == "https://repo.test/acme/directory"
    assert kube.repo_gets == 1


async def test_concurrent_misses_share_one_get() -> None:
    kube = setup()
    cache = WatchCache()
    kube.gate = asyncio.Event()
    lookups = [asyncio.create_task(lookup.resolve(kube, REF, "team-a", Settings(), cache))
               for _ in range(20)]
    await asyncio.sleep(0.01)
    kube.gate.set()
    endpoints = await asyncio.gather(*lookups)
    assert {e.directory_url for e in endpoints} == {"https://repo.test/acme/directory"}
    assert (kube.repo_gets, kube.ns_gets) == (1, 1)
    # An object that is not there is not kept: the next lookup asks again.
    cache = WatchCache()
    kube.gate = None
    del kube.customs[(CLUSTER, "", "shared")]
    assert await cache.repository(kube, CLUSTER, None, "shared") is None
    kube.customs[(CLUSTER, "", "shared")] = cluster_repo()
    assert await cache.repository(kube, CLUSTER, None, "shared") is not None
