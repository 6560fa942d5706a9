from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from certdepot.acme import crypto
from certdepot.controller.core.settings import Settings
from certdepot.controller.kinds.deps import Deps

from .fakes import NOW, FakeKube, FakeRepository, MiniCA


class Clock:
    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Events(list[tuple[str, str, str]]):
    def __call__(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.append((type_, reason, message))


@pytest.fixture(scope="session")
def ca() -> MiniCA:
    return MiniCA()


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    account_key = crypto.generate_private_key()
    kube.secrets[("team-a", "depot-account-key")] = {
        "metadata": {"name": "depot-account-key", "namespace": "team-a", "resourceVersion": "1"},
        "type": "Opaque",
        "data": {"account.key": base64.b64encode(crypto.private_key_to_pem(account_key)).decode()},
    }
    kube.customs[("CertificateRepository", "team-a", "depot")] = {
        "metadata": {"name": "depot", "namespace": "team-a"},
        "spec": {"url": "https://repo.test/acme/directory"},
        "status": {
            "accountURL": "https://repo.test/acme/acct/1",
            "accountKeySecretName": "depot-account-key",
            "conditions": [{"type": "Ready", "status": "True", "reason": "AccountRegistered"}],
        },
    }
    kube.namespaces = {"team-a": {"team": "a"}, "team-b": {"team": "b"}}
    return kube


@pytest.fixture
def repo(ca: MiniCA) -> FakeRepository:
    return FakeRepository(ca)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def deps(kube: FakeKube, repo: FakeRepository, clock: Clock, events: Events) -> Deps:
    return Deps(kube=kube, gateway=repo, settings=Settings(), clock=clock, events=events)


def download_body(**spec: Any) -> dict[str, Any]:
    full = {
        "repositoryRef": {"name": "depot", "kind": "CertificateRepository"},
        "dnsNames": ["www.example.test", "example.test"],
        "secretName": "web-tls",
    }
    full.update(spec)
    return {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "CertificateDownload",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "uid-web", "generation": 1},
        "spec": full,
        "status": {},
    }
