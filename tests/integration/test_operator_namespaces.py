"""--namespace limits what the operator touches."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_operator_support import apply, get, operator, wait_condition

from certdepot.testenv.kube import KubeEnv


def test_only_watched_namespaces_are_reconciled(
    kube: KubeEnv, crds_applied: list[str], tmp_path: Path
) -> None:
    for ns in ("certdepot", "watched", "ignored"):
        apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for ns in ("watched", "ignored"):
        apply(
            kube,
            {
                "apiVersion": "certdepot.io/v1alpha1",
                "kind": "CertificateDownload",
                "metadata": {"name": "app", "namespace": ns},
                "spec": {
                    "repositoryRef": {"name": "missing"},
                    "dnsNames": ["app.example.test"],
                    "secretName": "app-tls",
                },
            },
        )
    with operator(
        kube, tmp_path, "--standalone", "--namespace", "watched", "--log-json", name="operator-ns"
    ) as op:
        obj = wait_condition(
            kube,
            "certificatedownload",
            "app",
            "watched",
            status="False",
            reason="RepositoryNotFound",
            proc=op.proc,
        )
        assert "not found in namespace watched" in obj["status"]["conditions"][0]["message"]
        time.sleep(3)  # the watched one was handled well within this; the other must stay untouched
        ignored = get(kube, "certificatedownload", "app", "ignored")
        assert ignored is not None and not ignored.get("status")
        assert "finalizers" not in ignored["metadata"]
    # --log-json: every log record is one JSON object (the first line is the launcher's).
    lines = (tmp_path / "operator-ns.log").read_text().splitlines()[1:]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) >= len([ln for ln in lines if ln.strip()]) - 5
    assert any("RepositoryNotFound" in r.get("message", "") for r in records)
