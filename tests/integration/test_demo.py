"""`certdepot demo` as a newcomer runs it: a real process that starts real processes.

Asserts the summary (every resource Ready, every Secret proven by a verifying TLS
handshake) and the clean-up: every PID the demo printed is gone, its directory is removed
and nothing is left in its TMPDIR. Also: a failing step is named with its log lines and a
non-zero exit; --keep leaves a usable cluster until --stop; --upstream pebble.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RESOURCES = (
    "ClusterCertificateRepository/demo-depot",
    "CertificateDownload/demo/www",
    "DelegatedCertificate/demo/cdn-eu",
    "CertificateDownload/demo/shop-tls",
    # examples/central-repository, declared while the demo runs
    "RepositoryCertificate/certdepot/blog",
    "RepositoryTenant/certdepot/partner",
    "CertificateDownload/demo/blog",
)
NAMES = ("www.demo.example", "cdn-eu.demo.example", "shop.demo.example", "blog.demo.example")


def _env(tmpdir: Path) -> dict[str, str]:
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT / "operator")}


def _demo(tmpdir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "certdepot.cli", "demo", *args],
                          capture_output=True, text=True, env=_env(tmpdir), timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and \
        "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _started_pids(out: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\s+([\w-]+): pid (\d+), log ", out, re.MULTILINE)}


def _assert_cleaned_up(out: str, tmpdir: Path, expect: set[str]) -> None:
    pids = _started_pids(out)
    assert set(pids) == expect, out
    assert not [n for n, p in pids.items() if _alive(p)], f"left running: {pids}\n{out}"
    workdir = re.search(r"certdepot demo \([\w-]+\) in (\S+)", out)
    assert workdir, out
    assert not Path(workdir.group(1)).exists(), f"{workdir.group(1)} left behind"
    assert list(tmpdir.iterdir()) == [], f"files left in TMPDIR: {list(tmpdir.iterdir())}"


def _assert_summary(out: str) -> None:
    table = out[out.index("RESOURCE "):]
    for resource in RESOURCES:
        row = next((line for line in table.splitlines() if line.startswith(resource + " ")),
                   None)
        assert row is not None, f"{resource} missing from the summary\n{out}"
        assert row.split()[1] == "True", row
    # The delegated certificate lives one day, as the delegation allows (clock skew aside).
    cdn = next(line for line in table.splitlines() if line.startswith(RESOURCES[2] + " "))
    stamp = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cdn)
    assert stamp, cdn
    not_after = dt.datetime.fromisoformat(stamp.group(0).replace("Z", "+00:00"))
    left = not_after - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24, minutes=5), cdn
    for name in NAMES:
        assert re.search(rf"TLS ok\s+{re.escape(name)}\s+TLSv1\.[23]\s+serial [0-9a-f]+\s+"
                         r"chain verified to CN=", out), f"no verified handshake for {name}"
    assert "[11/11] prove every Secret" in out or "[12/12] prove every Secret" in out
    # The certificate declared as a resource is obtained and granted without a restart.
    assert re.search(r"repositorycertificate.certdepot.io/blog\s+True\s+[0-9a-f]+\s", out), out
    # Progress was shown while waiting, not a silent pause.
    assert re.search(r"\d+\.\ds \+ DelegatedCertificate/demo/cdn-eu\s+Ready=True", out), out


LOCAL = {"etcd", "kube-apiserver", "repository", "operator"}


WARM_BUDGET = 60.0  # issue 9: from a warm cache, under a minute


def _time_budget() -> float:
    """60 s on a machine with CPU to spare; scaled by the run queue on a shared, busy one
    (a load of 15 on 2 cores makes every Python start-up several times slower), so the
    test measures the demo rather than its neighbours. The figure is always printed."""
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return WARM_BUDGET * max(1.0, per_core / 1.5)


def test_demo_local_ca(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    budget = _time_budget()
    started = time.monotonic()
    res = _demo(tmpdir)
    took = time.monotonic() - started
    budget = max(budget, _time_budget())
    print(f"warm demo: {took:.1f}s (budget {budget:.0f}s, load {os.getloadavg()[0]:.1f})")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    _assert_summary(out)
    assert "certdepot demo local CA" in out
    _assert_cleaned_up(out, tmpdir, LOCAL)
    # Warm cache (the binaries are provisioned): under a minute on an idle machine.
    assert took < budget, f"warm demo took {took:.0f}s (budget {budget:.0f}s)\n{out}"


def test_demo_pebble_upstream(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    res = _demo(tmpdir, "--upstream", "pebble")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    _assert_summary(out)
    assert "Pebble Intermediate CA" in out
    _assert_cleaned_up(out, tmpdir, LOCAL | {"pebble", "pebble-challtestsrv"})


def _broken_examples(tmp_path: Path) -> Path:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    download = examples / "02-certificate-download.yaml"
    # No managed certificate has this name set: the repository refuses, never Ready.
    download.write_text(download.read_text().replace("- demo.example\n",
                                                     "- nothing.demo.example\n"))
    return examples


def _assert_failure_report(out: str) -> None:
    assert "FAILED at step 'wait until every resource is Ready'" in out, out
    assert "CertificateDownload/demo/www: Ready=False" in out, out
    assert re.search(r"--- last \d+ lines of \S+/operator\.log ---", out), out


def test_failing_step_is_named_with_logs_and_exits_nonzero(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    res = _demo(tmpdir, "--examples", str(_broken_examples(tmp_path)), "--timeout", "15")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    _assert_failure_report(res.stderr)
    _assert_cleaned_up(out, tmpdir, LOCAL)


def test_keep_that_fails_reports_and_leaves_nothing(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    res = _demo(tmpdir, "--keep", "--examples", str(_broken_examples(tmp_path)),
                "--timeout", "15")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    # The supervisor's report is relayed, though it removed its directory (and log) first.
    _assert_failure_report(out)
    assert "cleaned up: stopped 4 process(es)" in out, out
    _assert_cleaned_up(out, tmpdir, LOCAL)


def test_keep_then_stop(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    res = _demo(tmpdir, "--keep")
    out = res.stdout + res.stderr
    state_file = tmpdir / f"certdepot-demo-{os.getuid()}.json"
    try:
        assert res.returncode == 0, out
        _assert_summary(out)
        assert "certdepot demo --stop" in out
        state = json.loads(state_file.read_text())
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", out)
        assert kubeconfig and kubeconfig.group(1) == state["kubeconfig"]
        pids = _started_pids(out)
        assert set(pids) == LOCAL and all(_alive(p) for p in pids.values()), out
        # The printed commands work against the kept cluster.
        got = subprocess.run([state["kubectl"], "--kubeconfig", state["kubeconfig"],
                              "-n", "demo", "get", "secrets", "-o", "name"],
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert {"secret/www-tls", "secret/cdn-eu-tls", "secret/shop-tls"} <= \
            set(got.stdout.split())
        # The tenant's EAB HMAC key went into the cluster, never onto the terminal.
        eab = subprocess.run([state["kubectl"], "--kubeconfig", state["kubeconfig"],
                              "-n", "certdepot", "get", "secret", "demo-depot-eab",
                              "-o", "jsonpath={.data.secret}"],
                             capture_output=True, text=True, timeout=60)
        hmac = base64.b64decode(eab.stdout).decode()
        assert len(hmac) > 20 and hmac not in out
        again = _demo(tmpdir, "--keep", timeout=60)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        stop = _demo(tmpdir, "--stop", timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped;" in stop.stdout
    assert not state_file.exists()
    assert not [n for n, p in pids.items() if _alive(p)], f"left running after --stop: {pids}"
    assert not Path(state["workdir"]).exists()
    assert list(tmpdir.iterdir()) == [], list(tmpdir.iterdir())


def test_stop_without_kept_demo_is_harmless(tmp_path: Path) -> None:
    res = _demo(tmp_path / "tmp", "--stop", timeout=60)
    assert res.returncode == 0 and "no kept demo is running" in res.stdout


def test_killed_supervisor_takes_its_processes_along(tmp_path: Path) -> None:
    """Even SIGKILL leaves no process running; --stop then removes the files."""
    tmpdir = tmp_path / "tmp"
    res = _demo(tmpdir, "--keep")
    out = res.stdout + res.stderr
    state_file = tmpdir / f"certdepot-demo-{os.getuid()}.json"
    assert res.returncode == 0, out
    state = json.loads(state_file.read_text())
    pids = _started_pids(out)
    os.kill(state["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [n for n, p in pids.items() if _alive(p)], f"outlived the supervisor: {pids}"
    stop = _demo(tmpdir, "--stop", timeout=60)
    assert stop.returncode == 0 and "no longer running" in stop.stdout, stop.stdout
    assert not Path(state["workdir"]).exists()
    assert not state_file.exists()
    # Nothing the killed processes wrote is outside the directory --stop removed.
    assert list(tmpdir.iterdir()) == [], list(tmpdir.iterdir())
