"""Several replicas, one active: a second operator waits on the Lease until the first goes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import yaml
from test_operator_support import operator, wait_for

from certdepot.testenv.kube import KubeEnv


def leader_value(port: int) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("certdepot_operator_leader "):
            return float(line.split()[1])
    return None


def holder(kube: KubeEnv) -> str:
    res = kube.kubectl(
        "get", "lease", "certdepot-operator", "-n", "certdepot", "-o", "json", check=False
    )
    if res.returncode != 0:
        return ""
    return str(json.loads(res.stdout)["spec"].get("holderIdentity") or "")


def test_only_one_replica_is_active(kube: KubeEnv, crds_applied: list[str], tmp_path: Path) -> None:
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "certdepot"}}
        ),
    )
    with operator(kube, tmp_path, "--identity", "replica-a", name="replica-a") as a:
        wait_for("replica-a to lead", lambda: leader_value(a.metrics_port) == 1.0, proc=a.proc)
        assert holder(kube) == "replica-a"
        with operator(kube, tmp_path, "--identity", "replica-b", name="replica-b") as b:
            # b is up (healthy, ready as a standby) but does not act while a holds the Lease.
            for _ in range(3):
                assert leader_value(b.metrics_port) == 0.0
                assert holder(kube) == "replica-a"
            assert "acquired lease" not in b.proc.tail(200)
            a.proc.stop()  # a clean stop releases the Lease
            wait_for(
                "replica-b to take over",
                lambda: leader_value(b.metrics_port) == 1.0,
                timeout=30,
                proc=b.proc,
            )
            assert holder(kube) == "replica-b"
