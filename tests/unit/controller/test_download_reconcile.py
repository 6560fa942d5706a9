"""CertificateDownload reconcile steps against an in-memory API server and repository."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.problems import AcmeProblem
from certdepot.controller.gateway.model import RenewalWindow
from certdepot.controller.kinds import download
from certdepot.controller.kinds.deps import Deps
from certdepot.controller.kube import secrets

from .conftest import Clock, Events, download_body
from .fakes import FakeKube, FakeRepository, MiniCA

NAMES = ["www.example.test", "example.test"]


def secret_chain(kube: FakeKube, name: str = "web-tls") -> list[x509.Certificate]:
    data = kube.secrets[("team-a", name)]["data"]
    return crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]))


async def test_first_reconcile_writes_tls_secret(
    deps: Deps, kube: FakeKube, repo: FakeRepository, events: Events
) -> None:
    chain = repo.manage(NAMES)
    body = download_body(secretTemplate={"labels": {"app": "web"}, "annotations": {"team": "a"}})
    step = await download.reconcile(body, deps)
    secret = kube.secrets[("team-a", "web-tls")]
    assert secret["type"] == "kubernetes.io/tls"
    written = secret_chain(kube)
    assert written == chain[:2]  # leaf + intermediate; the root goes to ca.crt
    assert crypto.parse_pem_chain(base64.b64decode(secret["data"]["ca.crt"])) == [chain[2]]
    key = crypto.load_private_key(base64.b64decode(secret["data"]["tls.key"]))
    assert crypto.public_key_matches(key, written[0])
    meta = secret["metadata"]
    assert meta["labels"]["app"] == "web" and meta["annotations"]["team"] == "a"
    assert meta["labels"][secrets.MANAGED_BY_LABEL] == "certdepot"
    assert meta["annotations"][secrets.OWNER_ANNOTATION] == "CertificateDownload/team-a/web"
    assert meta["annotations"][secrets.SERIAL_ANNOTATION] == format(chain[0].serial_number, "x")
    status = step.status
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Downloaded")
    assert status["serial"] == format(chain[0].serial_number, "x")
    assert status["observedGeneration"] == 1 and status["failedAttempts"] == 0
    assert status["notAfter"] and status["renewalTime"] and status["fingerprint"]
    assert events[-1][:2] == ("Normal", "Downloaded")
    # Nothing secret in status or events.
    assert "PRIVATE" not in repr(status) + repr(events)


async def test_second_reconcile_does_not_download_again(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    repo.manage(NAMES)
    body = download_body()
    step = await download.reconcile(body, deps)
    body["status"] = step.status
    writes = kube.writes
    step2 = await download.reconcile(body, deps)
    assert repo.downloads == 1 and kube.writes == writes
    assert step2.status["conditions"][0]["reason"] == "UpToDate"
    assert step2.delay > 60


async def test_deleted_secret_comes_back(deps: Deps, kube: FakeKube, repo: FakeRepository) -> None:
    repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    del kube.secrets[("team-a", "web-tls")]
    await download.reconcile(body, deps)
    assert ("team-a", "web-tls") in kube.secrets and repo.downloads == 2


async def test_altered_secret_is_restored(
    deps: Deps, kube: FakeKube, repo: FakeRepository, ca: MiniCA
) -> None:
    chain = repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    other_chain, other_key = ca.issue(NAMES)
    kube.secrets[("team-a", "web-tls")]["data"]["tls.crt"] = base64.b64encode(
        crypto.chain_to_pem(other_chain)
    ).decode()
    kube.secrets[("team-a", "web-tls")]["data"]["tls.key"] = base64.b64encode(
        crypto.private_key_to_pem(other_key)
    ).decode()
    await download.reconcile(body, deps)
    assert secret_chain(kube)[0] == chain[0]


async def test_unmanaged_secret_is_never_overwritten(
    deps: Deps, kube: FakeKube, repo: FakeRepository, events: Events
) -> None:
    repo.manage(NAMES)
    foreign = {
        "metadata": {"name": "web-tls", "namespace": "team-a", "resourceVersion": "7"},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    }
    kube.secrets[("team-a", "web-tls")] = dict(foreign)
    body = download_body()
    step = await download.reconcile(body, deps)
    assert kube.secrets[("team-a", "web-tls")] == foreign
    ready = step.status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "SecretConflict")
    assert "adoptExistingSecret" in ready["message"]
    # A first step does not read the Secret first (it is almost always missing): the one
    # download it made is dropped when the create finds the Secret someone else's.
    assert repo.downloads == 1
    assert events[-1][:2] == ("Warning", "SecretConflict")
    body["status"] = step.status
    again = await download.reconcile(body, deps)
    assert again.status["conditions"][0]["reason"] == "SecretConflict"
    assert repo.downloads == 1  # later steps read it first: refused before any download
    assert kube.secrets[("team-a", "web-tls")] == foreign


async def test_first_step_creates_the_secret_without_reading_it(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    chain = repo.manage(NAMES)
    reads: list[tuple[str, str]] = []
    get = kube.get_secret

    async def counting(namespace: str, name: str) -> dict[str, Any] | None:
        if name == "web-tls":
            reads.append((namespace, name))
        return await get(namespace, name)

    kube.get_secret = counting  # type: ignore[method-assign]
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    assert reads == [] and secret_chain(kube)[0] == chain[0]
    assert (await download.reconcile(body, deps)).status["conditions"][0]["reason"] == "UpToDate"
    assert reads == [("team-a", "web-tls")]  # a step after the first reads it


async def test_first_step_replaces_its_own_secret_found_on_create(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    """The object recreated under the same name (its status gone): its Secret, ours, exists;
    the create's conflict reads it and replaces it."""
    first = repo.manage(NAMES)
    await download.reconcile(download_body(), deps)
    newer = repo.manage(NAMES)
    step = await download.reconcile(download_body(), deps)
    assert step.status["conditions"][0]["status"] == "True"
    assert secret_chain(kube)[0] == newer[0] != first[0]


async def test_adopting_an_unmanaged_secret_when_asked(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    repo.manage(NAMES)
    kube.secrets[("team-a", "web-tls")] = {
        "metadata": {"name": "web-tls", "namespace": "team-a", "resourceVersion": "7"},
        "type": "Opaque",
        "data": {},
    }
    step = await download.reconcile(download_body(adoptExistingSecret=True), deps)
    assert step.status["conditions"][0]["status"] == "True"
    assert kube.secrets[("team-a", "web-tls")]["type"] == "kubernetes.io/tls"


async def test_failed_renewal_keeps_the_valid_secret(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    repo.manage(NAMES, lifetime=dt.timedelta(days=90))
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    before = kube.secrets[("team-a", "web-tls")]
    clock.now += dt.timedelta(days=75)  # inside the default 30-day renewBefore
    repo.fail_with = AcmeProblem("serverInternal", "database down")
    step = await download.reconcile(body, deps)
    assert kube.secrets[("team-a", "web-tls")] == before
    ready = step.status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "RenewalFailed")
    assert step.status["failedAttempts"] == 1 and step.status["lastFailureTime"]
    body["status"] = {**body["status"], **step.status}
    step2 = await download.reconcile(body, deps)
    assert step2.status["failedAttempts"] == 2 and step2.delay == 2 * step.delay  # exponential


async def test_renewal_within_renew_before_fetches_new(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    repo.manage(NAMES)
    body = download_body(renewBefore="240h")
    body["status"] = (await download.reconcile(body, deps)).status
    clock.now += dt.timedelta(days=70)  # 90d cert, renew 10d before: not yet
    await download.reconcile(body, deps)
    assert repo.downloads == 1
    newer = repo.manage(NAMES, not_before=clock.now)
    clock.now += dt.timedelta(days=10)
    await download.reconcile(body, deps)
    assert repo.downloads == 2 and secret_chain(kube)[0] == newer[0]


async def test_ari_window_open_triggers_fetch(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    first = repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    newer = repo.manage(NAMES)
    serial = format(first[0].serial_number, "x")
    repo.windows[serial] = RenewalWindow(
        clock.now - dt.timedelta(minutes=1), clock.now + dt.timedelta(hours=1), serial
    )
    clock.now += deps.settings.renewal_info_interval
    await download.reconcile(body, deps)
    assert secret_chain(kube)[0] == newer[0]


async def test_permanent_error_is_reported_with_reason(deps: Deps, repo: FakeRepository) -> None:
    step = await download.reconcile(download_body(), deps)  # nothing managed with these names
    ready = step.status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "RejectedIdentifier")
    assert step.delay == deps.settings.backoff.cap_seconds


async def test_namespace_rules(deps: Deps, kube: FakeKube, repo: FakeRepository) -> None:
    repo.manage(NAMES)
    body = download_body()
    body["metadata"]["namespace"] = "team-b"  # the CertificateRepository lives in team-a
    step = await download.reconcile(body, deps)
    assert step.status["conditions"][0]["reason"] == "RepositoryNotFound"
    kube.customs[("ClusterCertificateRepository", "", "central")] = {
        "metadata": {"name": "central"},
        "spec": {
            "url": "https://repo.test/dir",
            "namespaceSelector": {"matchLabels": {"team": "a"}},
        },
        "status": {
            "accountURL": "https://repo.test/acct/9",
            "accountKeySecretName": "depot-account-key",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    deps.settings = type(deps.settings)(cluster_resource_namespace="team-a")
    body["spec"]["repositoryRef"] = {"name": "central", "kind": "ClusterCertificateRepository"}
    step = await download.reconcile(body, deps)
    assert step.status["conditions"][0]["reason"] == "RepositoryNotAllowed"
    assert repo.downloads == 0
    body["metadata"]["namespace"] = "team-a"
    step = await download.reconcile(body, deps)
    assert step.status["conditions"][0]["status"] == "True"
