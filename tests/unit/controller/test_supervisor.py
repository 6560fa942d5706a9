"""The supervisor's per-object loops: started by events, ended by deletion, no leftovers."""

from __future__ import annotations

import asyncio
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
