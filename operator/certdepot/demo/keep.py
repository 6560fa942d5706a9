"""``--keep`` and ``--stop``: leave the demo running in the background, stop it later.

The processes of a demo die with the process that started them (certdepot.testenv.procs
makes sure of that), so a kept demo cannot simply outlive the command. Instead the command
starts a detached *supervisor* (``certdepot demo --supervise DIR``), which runs the demo,
writes a state file and then waits; the command relays the supervisor's output until it
says it is ready and exits. ``certdepot demo --stop`` sends the supervisor SIGTERM, and it
stops every process and removes its directory as a normal run would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from certdepot.demo.steps import Echo

READY_MARKER = "=== certdepot demo is running ==="
SUPERVISE_FLAG = "--supervise"


def state_path() -> Path:
    """Where a kept demo records itself (one per user)."""
    return Path(tempfile.gettempdir()) / f"certdepot-demo-{os.getuid()}.json"


@dataclass(frozen=True)
class KeptDemo:
    pid: int
    workdir: str
    kubeconfig: str
    kubectl: str
    repository_config: str

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> KeptDemo | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def is_supervisor(pid: int) -> bool:
    """True when ``pid`` is alive and is a demo supervisor (not a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SUPERVISE_FLAG.encode() in cmdline


def running() -> KeptDemo | None:
    kept = KeptDemo.load(state_path())
    return kept if kept is not None and is_supervisor(kept.pid) else None


def start_supervisor(argv: Sequence[str], workdir: Path, echo: Echo,
                     timeout: float) -> int:
    """Start the supervisor, relay its output until it is ready; return an exit status."""
    log_path = workdir / "demo.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "certdepot.cli", "demo", *argv,
             SUPERVISE_FLAG, str(workdir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        return _relay(child, log_path, echo, timeout)
    except KeyboardInterrupt:
        # Ctrl-C before the demo is up: do not leave a half-started supervisor behind.
        echo(f"interrupted; stopping the demo supervisor (pid {child.pid})")
        child.terminate()
        child.wait(60)
        return 130


def _relay(child: subprocess.Popen[bytes], log_path: Path, echo: Echo, timeout: float) -> int:
    buffered = ""
    deadline = time.monotonic() + timeout
    # One handle for the whole relay: a supervisor that fails removes its directory, log
    # included, and its last lines must still be read.
    with log_path.open("rb") as fh:
        while True:
            chunk = fh.read()
            buffered += chunk.decode("utf-8", "replace")
            *lines, buffered = buffered.split("\n")
            for line in lines:
                if line == READY_MARKER:
                    return 0
                echo(line)
            code = child.poll()
            if code is not None:
                # It wrote its last lines before exiting: read them after seeing it exit.
                rest = buffered + fh.read().decode("utf-8", "replace")
                for line in rest.split("\n"):
                    if line == READY_MARKER:
                        return 0
                    if line:
                        echo(line)
                return code or 1
            if time.monotonic() > deadline:
                echo(f"the demo supervisor (pid {child.pid}) is not ready after "
                     f"{timeout:.0f}s; stopping it")
                child.terminate()
                child.wait(60)
                return 1
            if not chunk:
                time.sleep(0.1)


def stop(echo: Echo, timeout: float = 60.0) -> int:
    """Stop a kept demo; 0 when it is gone (or was not running)."""
    path = state_path()
    kept = KeptDemo.load(path)
    if kept is None:
        echo("no kept demo is running (no state file at " f"{path})")
        return 0
    if not is_supervisor(kept.pid):
        # Killed without its clean-up (its processes died with it): remove what it left.
        echo(f"the kept demo (pid {kept.pid}) is no longer running; removing {path}")
        workdir = Path(kept.workdir)
        if workdir.name.startswith("certdepot-demo-") and workdir.is_dir():
            shutil.rmtree(workdir, ignore_errors=True)
            echo(f"removed {workdir}")
        path.unlink(missing_ok=True)
        return 0
    echo(f"stopping the demo supervisor (pid {kept.pid}) and everything it started ...")
    os.kill(kept.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_supervisor(kept.pid):
        if time.monotonic() > deadline:
            # Its children get SIGKILL from the kernel when it dies (PR_SET_PDEATHSIG).
            echo(f"pid {kept.pid} did not stop in {timeout:.0f}s; killing it")
            os.kill(kept.pid, signal.SIGKILL)
            time.sleep(1)
            break
        time.sleep(0.2)
    path.unlink(missing_ok=True)
    if Path(kept.workdir).exists():
        echo(f"{kept.workdir} is still there; remove it by hand")
        return 1
    echo(f"stopped; {kept.workdir} removed")
    return 0


def instructions(kept: KeptDemo) -> list[str]:
    kubectl = f"{kept.kubectl} --kubeconfig {kept.kubeconfig}"
    return [
        "The demo keeps running. Look around:",
        f"  export KUBECONFIG={kept.kubeconfig}",
        f"  {kubectl} get clustercertificaterepositories,certificatedownloads,"
        "delegatedcertificates -A",
        f"  {kubectl} -n demo get secrets",
        f"  {kubectl} -n demo describe delegatedcertificate cdn-eu",
        f"  certdepot repository inventory --config {kept.repository_config}",
        f"  logs: {kept.workdir}/logs/ and {kept.workdir}/kube/",
        "Stop it (all processes, all files) with:",
        "  certdepot demo --stop",
    ]
