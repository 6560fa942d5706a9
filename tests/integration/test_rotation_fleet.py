"""Emergency rotation across separate clusters (issue 19 (5)): 3 API servers, an operator in
each at its default settings, 3 CertificateDownloads of one certificate per cluster; one
``certdepot repository rotate`` replaces every Secret within a minute, with one issuance,
never leaving a Secret empty or with a key that does not match. The same scenario at a
larger M is the benchmark ``python -m bench.rotation`` (bench/RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is a top-level package of the checkout; pytest does not put the root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import rotation


def test_rotation_reaches_every_cluster_within_a_minute(tmp_path: Path) -> None:
    r = rotation.run(3, 3, tmp_path, echo=lambda line: print(line, flush=True))
    assert r["secrets"] == 9 and len(r["replaced_seconds"]) == 9
    assert r["violations"] == [], r["violations"]
    assert r["upstream_orders"] == 1, r
    assert r["replaced_max_seconds"] < 60, r
    assert r["new_serial"] != r["old_serial"]
    assert r["rotated_events"] == 9, r
    assert r["samples"] > 10  # the sampler really watched the Secrets during the rotation
