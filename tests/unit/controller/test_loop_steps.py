"""The glue under the kopf daemons: one step writes status, loops wake on demand."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from certdepot.controller import loops
from certdepot.controller.kinds import account
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.loops import Runtime, run_step

from .conftest import download_body
from .fakes import FakeKube, FakeRepository


class Flag:
    def __init__(self) -> None:
        self.value = False

    def __bool__(self) -> bool:
        return self.value


async def test_run_step_patches_status_and_overlays_what_it_wrote(
    deps: Deps, kube: FakeKube
) -> None:
    runtime = Runtime(deps)
    seen: list[dict[str, Any]] = []

    async def reconcile(body: Any) -> Step:
        seen.append(dict(body.get("status") or {}))
        return Step({"failedAttempts": len(seen), "lastFailureTime": None}, 7.0)

    live = download_body()
    assert await run_step("CertificateDownload", live, runtime, reconcile) == 7.0
    assert kube.statuses[-1] == (
        "CertificateDownload",
        "team-a",
        "web",
        {"failedAttempts": 1, "lastFailureTime": None},
    )
    # The watch has not delivered the new status yet: the next step still sees it.
    await run_step("CertificateDownload", live, runtime, reconcile)
    assert seen[1] == {"failedAttempts": 1}
    assert live["status"] == {}  # kopf's live body is never mutated


async def test_repository_ready_wakes_waiting_certificates(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    runtime = Runtime(deps)
    key = loops.key_of("CertificateDownload", "team-a", "web")
    event = runtime.wakeups.event(key)
    body = {
        "kind": "CertificateRepository",
        "metadata": {"name": "new", "namespace": "team-a", "uid": "u-new", "generation": 1},
        "spec": {"url": "https://repo.test/acme/directory"},
        "status": {},
    }
    await run_step(
        "CertificateRepository",
        body,
        runtime,
        lambda b: account.reconcile(b, "CertificateRepository", deps),
    )
    assert event.is_set()
    assert ("team-a", "new-account-key") in kube.secrets  # the account key, kept for reuse
    status = kube.statuses[-1][3]
    assert status["accountURL"] == "https://repo.test/acme/acct/1"
    assert status["conditions"][0]["reason"] == "AccountRegistered"


async def test_repository_account_key_is_reused(deps: Deps, kube: FakeKube) -> None:
    body = {"metadata": {"name": "r", "namespace": "team-a", "uid": "u"}, "spec": {"url": "x"}}
    key1, name = await account.ensure_account_key(deps, body, "CertificateRepository")
    key2, _ = await account.ensure_account_key(deps, body, "CertificateRepository")
    assert name == "r-account-key"
    assert key1.private_numbers() == key2.private_numbers()  # type: ignore[union-attr]


async def test_missing_eab_secret_is_reported(deps: Deps) -> None:
    body = {
        "metadata": {"name": "r", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {
            "url": "x",
            "externalAccountBinding": {"keyID": "k", "keySecretRef": {"name": "nope"}},
        },
        "status": {},
    }
    step = await account.reconcile(body, "CertificateRepository", deps)
    cond = step.status["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "EABSecretNotFound")


async def test_loop_sleeps_until_woken_or_stopped() -> None:
    wakeups = loops.Wakeups()
    stopped = Flag()
    calls: list[float] = []

    async def step() -> float:
        calls.append(time.monotonic())
        if len(calls) == 3:
            stopped.value = True
        return 3600.0

    task = asyncio.create_task(loops.run("K/ns/a", step, wakeups, stopped))
    await asyncio.sleep(0.05)
    assert len(calls) == 1
    wakeups.wake("K/ns/a")
    await asyncio.sleep(0.05)
    assert len(calls) == 2
    wakeups.wake_kind("K")
    await asyncio.wait_for(task, timeout=5)  # third step sets stopped: the loop ends
    assert len(calls) == 3
    wakeups.wake("K/ns/a")  # forgotten: no error


async def test_loop_survives_a_failing_step() -> None:
    wakeups = loops.Wakeups()
    stopped = Flag()
    calls: list[int] = []

    async def step() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kubernetes API error 500 Internal Server Error")
        stopped.value = True
        return 1.0

    await asyncio.wait_for(loops.run("K/ns/b", step, wakeups, stopped), timeout=10)
    assert len(calls) == 2
