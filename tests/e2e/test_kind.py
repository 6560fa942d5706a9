"""certdepot on a kind cluster: the image, the chart, Pebble in the cluster and examples/.

Opt-in (CERTDEPOT_KIND=1, see conftest.py); runs tests/e2e/kind.sh, which needs Docker or
Podman, kind, kubectl, helm, openssl and curl. A missing tool fails the test with the
script's message saying how to get it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "e2e" / "kind.sh"


@pytest.mark.kind
@pytest.mark.timeout(3600)
def test_examples_become_ready_secrets_on_kind() -> None:
    proc = subprocess.run([str(SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=3500)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"kind.sh exited {proc.returncode}:\n{output[-20000:]}"
    assert "kind.sh: " in output and " passed, 0 failed" in output, output[-5000:]
