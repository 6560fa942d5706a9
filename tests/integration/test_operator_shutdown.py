"""SIGTERM stops ``certdepot operator run`` promptly (no 5 s wait for kopf's "hung" tasks)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from test_operator_support import apply, namespace, operator

from certdepot.testenv.kube import KubeEnv

# kopf waits 5 s for tasks it counts as hung; a clean stop takes ~0.5 s on 2 shared cores.
EXIT_BUDGET_SECONDS = 2.5


def test_sigterm_exits_without_waiting_for_hung_tasks(
    kube: KubeEnv, crds_applied: list[str], tmp_path: Path
) -> None:
    apply(kube, namespace("certdepot"))
    # Leader election on (the default): the Lease holder runs next to kopf as well.
    with operator(kube, tmp_path, "--verbose", name="operator-sigterm") as op:
        time.sleep(1)  # let the watch streams open
        started = time.monotonic()
        op.proc.popen.send_signal(signal.SIGTERM)
        code = op.proc.popen.wait(timeout=30)
        elapsed = time.monotonic() - started
    log = op.proc.log_path.read_text()
    assert code == 0, op.proc.tail()
    assert "Hung tasks are stopped" not in log, op.proc.tail()
    assert elapsed < EXIT_BUDGET_SECONDS, f"exit took {elapsed:.2f} s\n{op.proc.tail()}"
