"""Bounded soak: local-ca certificates with a lifetime of minutes renewed continuously while
the repository and the operator are stopped, killed and restarted at random; a sampler reads
every Secret every second and the run fails if any ever holds an expired, half-written or
mismatched certificate/key. Opt-in (``make soak``); knobs:

- CERTDEPOT_SOAK_MINUTES (default 20): how long faults are injected;
- CERTDEPOT_SOAK_CERTS (default 10): CertificateDownloads (one managed certificate each);
- CERTDEPOT_SOAK_LIFETIME (default 4m): certificate lifetime at the local CA;
- CERTDEPOT_SOAK_SEED: random seed (printed, to replay a run's schedule).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from fleet import REPO, fleet, wait_until
from test_operator_support import wait_condition

from certdepot.testenv.kube import KubeEnv

MINUTES = float(os.environ.get("CERTDEPOT_SOAK_MINUTES", "20"))
CERTS = int(os.environ.get("CERTDEPOT_SOAK_CERTS", "10"))
LIFETIME = os.environ.get("CERTDEPOT_SOAK_LIFETIME", "4m")
SEED = int(os.environ.get("CERTDEPOT_SOAK_SEED", str(int(time.time()))))
NAMESPACE = "robust-soak"


@pytest.mark.timeout(int(MINUTES * 60) + 900)
def test_soak(kube: KubeEnv, crds_applied: list[str], tmp_path: Path) -> None:
    from fleet import Sampler

    rnd = random.Random(SEED)
    events: list[str] = []
    with fleet(kube, tmp_path, count=CERTS, lifetime=LIFETIME, namespace=NAMESPACE) as f:
        wait_condition(kube, "clustercertificaterepository", REPO, None, status="True",
                       proc=f.op, timeout=120)
        with Sampler(kube, NAMESPACE, interval=1.0) as sampler:
            f.apply(*[f.download(i) for i in range(CERTS)])
            wait_until("first rollout", lambda: f.ready_count() == CERTS, 300, f.op, f.repo)
            started = time.monotonic()
            end = started + MINUTES * 60
            while time.monotonic() < end:
                time.sleep(rnd.uniform(15, 45))
                target = rnd.choice(["repository", "operator"])
                kill = rnd.random() < 0.5
                down = rnd.uniform(1, 8)
                t = round(time.monotonic() - started)
                events.append(f"+{t}s {'kill -9' if kill else 'stop'} {target} for {down:.1f}s")
                if target == "repository":
                    f.kill_repo() if kill else f.stop_repo()
                    time.sleep(down)
                    f.start_repo()
                else:
                    f.kill_operator() if kill else f.stop_operator()
                    time.sleep(down)
                    f.start_operator()
            wait_until("all Ready after the last fault", lambda: f.ready_count() == CERTS,
                       300, f.op, f.repo)
            time.sleep(5)
        v = sampler.verdict
        renewals = sum(len(s) - 1 for s in v.serials.values())
        figures = {
            "seed": SEED, "minutes": MINUTES, "certificates": CERTS, "lifetime": LIFETIME,
            "repository_starts": f.repo_starts, "operator_starts": f.op_starts,
            "faults": len(events), "samples": v.samples, "secret_reads": v.secrets_checked,
            "renewals_seen": renewals, "violations": len(v.violations),
            "items_lost": CERTS - len(v.serials),
        }
        out = tmp_path / "soak-figures.json"
        out.write_text(json.dumps({**figures, "events": events,
                                   "violations_list": v.violations[:200]}, indent=2))
        print(f"\nsoak figures: {json.dumps(figures)}\nevents: {events}\n(written to {out})")
        assert not v.violations, "\n".join(v.violations[:30])
        assert len(v.serials) == CERTS, "some Secret was never seen"
        lifetime_s = {"m": 60, "s": 1, "h": 3600}[LIFETIME[-1]] * float(LIFETIME[:-1])
        # Every certificate turned over at least once per lifetime on average.
        assert renewals >= CERTS * int(MINUTES * 60 / lifetime_s) // 2, figures
