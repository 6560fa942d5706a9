"""The process helper: start with a log, wait, stop by PID with escalation, tail on failure."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from certdepot.testenv import procs

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_start_logs_and_waits_for_port(tmp_path: Path) -> None:
    port = procs.free_port()
    script = (
        "import socket,sys,time;print('hello from child', flush=True);"
        f"s=socket.socket();s.bind(('127.0.0.1',{port}));s.listen();time.sleep(60)"
    )
    proc = procs.start("listener", [PY, "-c", script], log_path=tmp_path / "l.log")
    try:
        proc.wait_for_port(port, timeout=10)
        assert proc.running
        assert "hello from child" in proc.tail()
    finally:
        proc.stop(grace=2)
    assert not proc.running
    assert not _alive(proc.pid)


def test_dead_process_fails_fast_with_log_tail(tmp_path: Path) -> None:
    proc = procs.start(
        "crasher", [PY, "-c", "import sys; print('boom: bad config'); sys.exit(3)"],
        log_path=tmp_path / "c.log",
    )
    started = time.monotonic()
    with pytest.raises(procs.ProcessError) as info:
        proc.wait_for_port(procs.free_port(), timeout=30)
    assert time.monotonic() - started < 10
    assert "exited with status 3" in str(info.value)
    assert "boom: bad config" in str(info.value)


def test_timeout_names_the_port(tmp_path: Path) -> None:
    proc = procs.start("sleeper", [PY, "-c", "import time; time.sleep(60)"],
                       log_path=tmp_path / "s.log")
    port = procs.free_port()
    try:
        with pytest.raises(procs.ProcessError, match=f"127.0.0.1:{port}"):
            proc.wait_for_port(port, timeout=0.5)
    finally:
        proc.stop(grace=2)


def test_stop_escalates_to_sigkill_and_takes_the_group(tmp_path: Path) -> None:
    # Ignores SIGTERM and has a child in the same process group.
    script = (
        "import signal,subprocess,sys,time;signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        f"c=subprocess.Popen([{PY!r},'-c','import time; time.sleep(60)']);"
        "print(c.pid, flush=True);time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    proc = procs.start("stubborn", [PY, "-c", script], log_path=log)
    deadline = time.monotonic() + 10
    while not log.read_text().strip().splitlines()[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(log.read_text().strip().splitlines()[-1])
    started = time.monotonic()
    code = proc.stop(grace=0.5)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert proc.stop() == code  # idempotent


def test_custom_stop_signal(tmp_path: Path) -> None:
    script = (
        "import signal,sys,time;"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(7));"
        "print('ready', flush=True);time.sleep(60)"
    )
    log = tmp_path / "int.log"
    proc = procs.start("int", [PY, "-c", script], log_path=log, stop_signal=signal.SIGINT)
    deadline = time.monotonic() + 10
    # (the log's first line is our header, which quotes the script)
    while "ready" not in log.read_text().splitlines()[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stop(grace=5) == 7


def test_stop_all_is_the_backstop(tmp_path: Path) -> None:
    proc = procs.start("forgotten", [PY, "-c", "import time; time.sleep(60)"],
                       log_path=tmp_path / "f.log")
    procs.stop_all()
    assert not proc.running


def test_free_port_is_bindable_and_not_repeated() -> None:
    ports = {procs.free_port(udp_too=True) for _ in range(20)}
    assert len(ports) == 20
    for port in list(ports)[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_missing_executable_is_a_process_error(tmp_path: Path) -> None:
    with pytest.raises(procs.ProcessError, match="cannot start"):
        procs.start("ghost", [str(tmp_path / "no-such-binary")], log_path=tmp_path / "g.log")


def test_wait_for_url_reports_last_status(tmp_path: Path) -> None:
    port = procs.free_port()
    script = (
        "import http.server as h\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(503); self.end_headers(); self.wfile.write(b'warming up')\n"
        f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    proc = procs.start("http", [PY, "-c", script], log_path=tmp_path / "h.log")
    try:
        with pytest.raises(procs.ProcessError, match="HTTP 503: warming up"):
            proc.wait_for_url(f"http://127.0.0.1:{port}/", timeout=2)
        assert proc.wait_for_url(f"http://127.0.0.1:{port}/", ok_status=(503,)).status_code == 503
    finally:
        proc.stop(grace=2)
