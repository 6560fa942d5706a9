"""`kubectl certdepot renew`: the annotation makes the next step fetch, status records it once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from certdepot.acme.problems import AcmeProblem
from certdepot.controller.core import renewrequest
from certdepot.controller.kinds import delegated, download
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.loops import Runtime, Supervisor

from .conftest import Events, download_body
from .fakes import FakeKube, FakeRepository, MiniCA

NAMES = ["www.example.test", "example.test"]


def _request(body: dict[str, Any], value: str) -> None:
    body["metadata"].setdefault("annotations", {})[renewrequest.ANNOTATION] = value


async def test_request_fetches_a_good_certificate_again_and_is_recorded_once(
    deps: Deps, repo: FakeRepository, events: Events
) -> None:
    repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    assert repo.downloads == 1
    _request(body, "2026-12-06T18:00:00.000001Z")
    step = await download.reconcile(body, deps)
    assert repo.downloads == 2  # fetched although the certificate is far from renewal
    assert step.status[renewrequest.STATUS_FIELD] == "2026-12-06T18:00:00.000001Z"
    assert "RenewalRequested" in events[-1][2]
    body["status"] = {**body["status"], **step.status}
    again = await download.reconcile(body, deps)
    assert repo.downloads == 2  # the same request is not honoured twice
    assert again.status["conditions"][0]["reason"] == "UpToDate"
    _request(body, "2026-12-06T18:05:00.000001Z")
    await download.reconcile(body, deps)
    assert repo.downloads == 3  # a new request is


async def test_failed_request_stays_pending(deps: Deps, repo: FakeRepository) -> None:
    repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    _request(body, "2026-12-06T18:00:00.000001Z")
    repo.fail_with = AcmeProblem("serverInternal", "upstream down")
    step = await download.reconcile(body, deps)
    assert renewrequest.STATUS_FIELD not in step.status
    assert step.status["failedAttempts"] == 1
    merged = {**body["status"], **step.status}
    assert renewrequest.pending(body["metadata"], merged) == "2026-12-06T18:00:00.000001Z"


async def test_supervisor_wakes_the_loop_when_a_renewal_is_requested(ca: MiniCA) -> None:
    deps = Deps(kube=FakeKube(), gateway=FakeRepository(ca))
    sup = Supervisor(Runtime(deps))
    steps: list[Mapping[str, Any]] = []

    async def reconcile(b: Mapping[str, Any]) -> Step:
        steps.append(b)
        return Step({}, 3600.0)  # only a wake-up runs it again within the test

    body = download_body()
    sup.observe("CertificateDownload", "ADDED", body, reconcile)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if steps:
            break
    _request(body, "2026-12-06T18:00:00.000001Z")  # same generation: only the annotation
    sup.observe("CertificateDownload", "MODIFIED", body, reconcile)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(steps) > 1:
            break
    await sup.stop_all()
    assert len(steps) == 2


async def test_request_reissues_a_delegated_certificate(deps: Deps, repo: FakeRepository) -> None:
    from .test_delegated_ingress import body as delegated_body

    b = delegated_body()
    b["status"] = (await delegated.reconcile(b, deps)).status
    first = b["status"]["serial"]
    _request(b, "2026-12-06T18:00:00.000001Z")
    step = await delegated.reconcile(b, deps)
    assert len(repo.csrs) == 2  # a new order although the certificate is good
    assert step.status["serial"] != first
    assert step.status[renewrequest.STATUS_FIELD] == "2026-12-06T18:00:00.000001Z"
