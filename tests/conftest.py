"""Session fixtures: real processes on 127.0.0.1 (see docs/testing.md).

Each fixture starts its processes the first time a test asks for it and stops them at the
end of the session (finalizers; certdepot.testenv.procs also stops every process it
started at interpreter exit). A missing binary or system package makes the fixture, and so
the test, FAIL with a message saying how to get it; nothing is skipped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The cache the Makefile provisions into, also when pytest is run by hand.
os.environ.setdefault("CERTDEPOT_CACHE", str(ROOT / ".cache" / "testenv"))

from certdepot.testenv import procs  # noqa: E402
from certdepot.testenv.dns import DnsServer  # noqa: E402
from certdepot.testenv.kube import KubeEnv  # noqa: E402
from certdepot.testenv.pebble import PebbleEnv  # noqa: E402
from certdepot.testenv.postgres import PostgresEnv  # noqa: E402
from certdepot.testenv.provision import ProvisionError  # noqa: E402

CRDS = ROOT / "crds"


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    # A CI runner's SIGTERM would otherwise kill pytest without running finalizers.
    raise KeyboardInterrupt(f"received signal {signum}")


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def _started(what: str, start: Callable[[], Any]) -> Any:
    try:
        return start()
    except ProvisionError as exc:
        pytest.fail(f"{what}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeEnv]:
    """etcd + kube-apiserver (RBAC on, admin in system:masters); see KubeEnv."""
    env = KubeEnv()
    try:
        yield _started("kube", env.start)
    finally:
        env.stop()


def crd_names() -> list[str]:
    """metadata.name of every CustomResourceDefinition in crds/."""
    import yaml

    names = []
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    return names


@pytest.fixture(scope="session")
def crds_applied(kube: KubeEnv) -> list[str]:
    """Applies every CRD in crds/ and waits until each is Established and served."""
    names = crd_names()
    assert names, f"no CustomResourceDefinitions found in {CRDS}"
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kube.wait_for_crds(names)
    return names


@pytest.fixture(scope="session")
def pebble_factory() -> Iterator[Callable[..., PebbleEnv]]:
    """``pebble_factory(**PebbleEnv options) -> started PebbleEnv``, stopped at session end
    (or earlier by calling its ``.stop()``)."""
    started: list[PebbleEnv] = []

    def make(**options: Any) -> PebbleEnv:
        env = PebbleEnv(**options)
        started.append(env)
        result: PebbleEnv = _started("pebble", env.start)
        return result

    try:
        yield make
    finally:
        for env in reversed(started):
            env.stop()


@pytest.fixture(scope="session")
def pebble(pebble_factory: Callable[..., PebbleEnv]) -> PebbleEnv:
    """Pebble without EAB; profiles default, shortlived, tenminutes."""
    return pebble_factory()


@pytest.fixture(scope="session")
def pebble_eab(pebble_factory: Callable[..., PebbleEnv]) -> PebbleEnv:
    """Pebble requiring EAB; ``.eab`` maps key id -> base64url HMAC key."""
    return pebble_factory(eab=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresEnv]:
    """A PostgreSQL server; ``.url`` (SQLAlchemy), ``.dsn``, ``.new_database(name)``."""
    # Not under pytest's tmp dir: as root the server runs as `postgres`, which cannot
    # enter pytest's 0700 base directory.
    env = _started("postgres", PostgresEnv)
    try:
        yield _started("postgres", env.start)
    finally:
        env.stop()


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    """Knot DNS, authoritative for ``.zone``, accepting TSIG-signed RFC 2136 updates."""
    env = _started("dns_server", DnsServer)
    try:
        yield _started("dns_server", env.start)
    finally:
        env.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Backstop for processes a test started through procs and did not stop itself.
    procs.stop_all()
