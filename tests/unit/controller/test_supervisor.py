"""The supervisor's per-object loops: started by events, ended by deletion, no leftovers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.loops import Runtime, Supervisor

from .fakes import FakeKube, FakeRepository, MiniCA


def body(uid: str = "u-1") -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "team-a", "uid": uid, "generation": 1},
        "spec": {},
        "status": {},
    }


async def test_deletion_ends_the_sleeping_loop_and_drops_its_memory(ca: MiniCA) -> None:
    deps = Deps(kube=FakeKube(), gateway=FakeRepository(ca))
    sup = Supervisor(Runtime(deps))
    steps: list[int] = []

    async def reconcile(b: Mapping[str, Any]) -> Step:
        steps.append(1)
        deps.memory("u-1").last_warning = "remembered"
        return Step({}, 3600.0)  # sleeps an hour: only cancellation ends it

    sup.observe("CertificateDownload", "ADDED", body(), reconcile)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if steps:
            break
    task = sup.entries["CertificateDownload/team-a/web"].task
    assert "u-1" in deps.memories
    sup.observe("CertificateDownload", "DELETED", body(), reconcile)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=1)
    assert task.done()
    assert "u-1" not in deps.memories
    assert sup.entries == {}


async def test_kept_status_copy_dropped_once_the_watch_delivers_it(ca: MiniCA) -> None:
    """run_step keeps the status it wrote to overlay a watch not caught up yet; the event
    carrying that status makes the copy unnecessary, and it is dropped (memory per object)."""
    deps = Deps(kube=FakeKube(), gateway=FakeRepository(ca))
    sup = Supervisor(Runtime(deps))
    stepped = asyncio.Event()

    async def reconcile(b: Mapping[str, Any]) -> Step:
        stepped.set()
        return Step({"serial": "ab", "conditions": [{"type": "Ready", "status": "True"}]}, 3600)

    sup.observe("CertificateDownload", "ADDED", body(), reconcile)
    await asyncio.wait_for(stepped.wait(), timeout=1)
    await asyncio.sleep(0.01)
    assert deps.memory("u-1").status["serial"] == "ab"
    sup.observe("CertificateDownload", "MODIFIED", body(), reconcile)  # an older view
    assert deps.memory("u-1").status["serial"] == "ab"
    caught_up = body()
    caught_up["status"] = {"serial": "ab", "conditions": [{"type": "Ready", "status": "True"}]}
    sup.observe("CertificateDownload", "MODIFIED", caught_up, reconcile)
    assert deps.memory("u-1").status == {}
    await sup.stop_all()


def test_kopf_memo_copies_are_the_runtime_itself(ca: MiniCA) -> None:
    import copy

    runtime = Runtime(Deps(kube=FakeKube(), gateway=FakeRepository(ca)))
    assert copy.copy(runtime) is runtime


def test_lean_copy_keeps_what_is_read_and_shares_keys() -> None:
    from certdepot.controller.kube.api import lean_copy

    def decoded() -> dict[str, Any]:
        return json.loads(
            json.dumps(
                {
                    "metadata": {
                        "name": "web",
                        "managedFields": [{"manager": "kubectl"}],
                        "annotations": {
                            "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                            "certdepot.io/renew": "now",
                        },
                    },
                    "spec": {"dnsNames": ["a.example.test"], "secretName": "web-tls"},
                    "status": {"conditions": [{"lastTransitionTime": "2026-12-06T00:00:00Z"}]},
                }
            )
        )

    one, two = lean_copy(decoded()), lean_copy(decoded())
    assert one == {
        "metadata": {"name": "web", "annotations": {"certdepot.io/renew": "now"}},
        "spec": {"dnsNames": ["a.example.test"], "secretName": "web-tls"},
        "status": {"conditions": [{"lastTransitionTime": "2026-12-06T00:00:00Z"}]},
    }
    key_one = next(iter(one["status"]["conditions"][0]))
    key_two = next(iter(two["status"]["conditions"][0]))
    assert key_one is key_two  # one string for every object's copy


async def test_steps_run_at_most_step_slots_at_once(ca: MiniCA) -> None:
    deps = Deps(kube=FakeKube(), gateway=FakeRepository(ca))
    sup = Supervisor(Runtime(deps, step_slots=asyncio.Semaphore(2)))
    release = asyncio.Event()
    running, most, done = 0, 0, 0

    async def reconcile(b: Mapping[str, Any]) -> Step:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        done += 1
        return Step({}, 3600.0)

    for n in range(5):
        sup.observe(
            "CertificateDownload",
            "ADDED",
            {
                **body(f"u-{n}"),
                "metadata": {
                    "name": f"web-{n}",
                    "namespace": "team-a",
                    "uid": f"u-{n}",
                    "generation": 1,
                },
            },
            reconcile,
        )
    await asyncio.sleep(0.05)
    assert (running, most) == (2, 2)  # the other three wait their turn
    release.set()
    for _ in range(100):
        if done == 5:
            break
        await asyncio.sleep(0.01)
    assert done == 5 and most == 2
    await sup.stop_all()
