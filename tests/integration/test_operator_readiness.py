"""The operator's /readyz follows the API server: a real operator process against a real
kube-apiserver that goes away and comes back (its own, so no other test sees the outage)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from test_operator_support import operator

from certdepot.testenv.kube import KubeEnv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_kube() -> Iterator[KubeEnv]:
    env = KubeEnv()
    try:
        env.start()
        env.kubectl("apply", "-f", str(ROOT / "crds"))
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "certdepot"}}
        env.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
        yield env
    finally:
        env.stop()


def _ready_status(port: int, want: int, timeout: float) -> list[int]:
    """Poll /readyz until it answers ``want``; every status seen, in order."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == want:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"/readyz never answered {want} within {timeout}s (saw {seen})")


def test_not_ready_while_the_api_server_is_gone(own_kube: KubeEnv, tmp_path: Path) -> None:
    # Standalone: with peering the replica exits once it cannot renew its Lease (by design,
    # the pod restarts); here the process stays and only its readiness may change.
    with operator(own_kube, tmp_path, "--standalone") as op:
        assert _ready_status(op.health_port, 200, 5) == [200]
        assert own_kube.apiserver is not None
        own_kube.apiserver.stop()
        # Stale after 15 s without an answer (probes every 5 s, each bounded by 5 s).
        assert _ready_status(op.health_port, 503, 40)[-1] == 503
        own_kube.restart()
        assert _ready_status(op.health_port, 200, 40)[-1] == 200
        op.proc.check_running()  # an outage is not a reason to exit
