"""Launch and stop real processes for tests and the demo.

The whole API in one place::

    port = free_port()
    proc = start("pebble", [str(binary), "-config", cfg], log_path=workdir / "pebble.log")
    proc.wait_for_port(port)                  # or proc.wait_for_url(url, verify=ca)
    ...
    proc.stop()                               # SIGTERM, then SIGKILL after a grace period

Every process is started in its own session, so ``stop`` signals the process group whose id
is the PID we started (wrappers such as ``runuser`` and their children go together). Two
backstops make sure a crashed run leaves nothing behind: every started process is stopped
at interpreter exit, and on Linux a process started from the main thread gets SIGKILL from
the kernel when its parent dies (PR_SET_PDEATHSIG), even if the parent was SIGKILLed.
A process that dies or does not come up raises :class:`ProcessError` with its log's tail.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import httpx

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "Service",
    "free_port",
    "remove_workdir",
    "ssl_context",
    "start",
    "stop_all",
    "tail",
    "wait_for_port",
    "wait_for_url",
]

DEFAULT_STOP_GRACE = 10.0
_POLL = 0.05


class ProcessError(RuntimeError):
    """A managed process failed to start, died, or did not become ready in time."""


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class ManagedProcess:
    """A process we started, with its log file. Create it with :func:`start`."""

    def __init__(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        log_path: Path,
        argv: Sequence[str],
        stop_signal: signal.Signals,
    ) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.argv = list(argv)
        self.stop_signal = stop_signal

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} running={self.running}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def fail(self, message: str) -> ProcessError:
        """A ProcessError for this process that quotes the tail of its log."""
        return ProcessError(
            f"{self.name} (pid {self.pid}): {message}\n"
            f"--- last lines of {self.log_path} ---\n{self.tail()}"
        )

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise self.fail(f"exited with status {code}")

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        """Wait until ``host:port`` accepts TCP connections; fail early if the process dies."""
        wait_for_port(port, host=host, timeout=timeout, process=self)

    def wait_for_url(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        verify: ssl.SSLContext | str | bool = True,
        cert: tuple[str, str] | None = None,
        ok_status: Sequence[int] = (200,),
    ) -> httpx.Response:
        """Wait until GET ``url`` answers with one of ``ok_status``; return that response."""
        return wait_for_url(
            url, timeout=timeout, verify=verify, cert=cert, ok_status=ok_status, process=self
        )

    def stop(self, grace: float = DEFAULT_STOP_GRACE) -> int | None:
        """Stop the process group: ``stop_signal`` first, SIGKILL after ``grace`` seconds.

        Idempotent. Returns the exit status (None if it could not be reaped).
        """
        _forget(self)
        if self.popen.poll() is not None:
            return self.popen.returncode
        _signal_group(self.pid, self.stop_signal)
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            try:
                return self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return None
        finally:
            # Children that outlived the leader (same group) must not survive either.
            _signal_group(self.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The kernel sends the signal when the
    # *thread* that forked exits, hence only used for starts from the main thread.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1
_registry: dict[int, ManagedProcess] = {}
_registry_lock = threading.Lock()


def _forget(proc: ManagedProcess) -> None:
    with _registry_lock:
        _registry.pop(proc.pid, None)


def stop_all() -> None:
    """Stop every process started through this module that is still registered."""
    with _registry_lock:
        procs = list(_registry.values())
    for proc in reversed(procs):
        proc.stop(grace=5)


atexit.register(stop_all)


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | int | None = None,
    group: str | int | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> ManagedProcess:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    ``env`` replaces the environment (default: inherit); ``extra_env`` is merged on top.
    ``user``/``group`` run it as another account (needs root), e.g. PostgreSQL refuses root.
    ``stop_signal`` is what :meth:`ManagedProcess.stop` sends first (PostgreSQL wants
    SIGINT for a fast shutdown; SIGTERM waits for clients to disconnect).
    """
    args = [os.fspath(a) for a in argv]
    environ = dict(os.environ if env is None else env)
    if extra_env:
        environ.update(extra_env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"=== {time.strftime('%H:%M:%S')} starting {name}: {args}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=group,
                preexec_fn=_die_with_parent if _pdeathsig_ok() else None,
            )
        except OSError as exc:
            raise ProcessError(f"{name}: cannot start {args[0]}: {exc}") from exc
    proc = ManagedProcess(name, popen, log_path, args, stop_signal)
    with _registry_lock:
        _registry[proc.pid] = proc
    return proc


def _pdeathsig_ok() -> bool:
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


_handed_out: set[int] = set()


KEEP_ENV = "CERTDEPOT_KEEP_TESTENV"


def remove_workdir(path: Path) -> None:
    """Delete an environment's temporary directory, unless CERTDEPOT_KEEP_TESTENV=1 asks
    to keep it (with its logs) for a post-mortem; then say where it is."""
    if os.environ.get(KEEP_ENV, "") not in ("", "0"):
        sys.stderr.write(f"certdepot testenv: kept {path} ({KEEP_ENV} is set)\n")
        return
    shutil.rmtree(path, ignore_errors=True)


class Service:
    """Base of the environments (Kubernetes, Pebble, PostgreSQL, DNS): processes that live
    in one work directory, which is removed on stop when the environment created it.

    A subclass names the attributes holding its processes in ``PROCESSES`` (stopped in that
    order) and implements :meth:`start`; ``with Env() as env:`` starts and stops it.
    """

    PROCESSES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, workdir: Path | None, prefix: str) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=prefix))

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process (idempotent); remove the workdir if we created it."""
        for name in self.PROCESSES:
            proc: ManagedProcess | None = getattr(self, name)
            if proc is not None:
                proc.stop()
            setattr(self, name, None)
        if self._own_workdir:
            remove_workdir(self.workdir)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1", *, udp_too: bool = False) -> int:
    """A port that is free on ``host`` right now (TCP, and UDP when ``udp_too``).

    The kernel picks it; ports already handed out by this process are skipped so that
    several servers configured before any of them starts do not get the same one.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port in _handed_out:
            continue
        if udp_too:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ProcessError(f"no free port found on {host}")


def ssl_context(
    verify: ssl.SSLContext | str | bool = True, cert: tuple[str, str] | None = None
) -> ssl.SSLContext:
    """An SSL context from httpx-style ``verify`` (CA file path, bool, or a context) and an
    optional client ``cert`` (cert file, key file); httpx deprecates passing those itself."""
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    *,
    timeout: float = 30.0,
    process: ManagedProcess | None = None,
) -> None:
    """Wait until ``host:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_running()
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            message = f"nothing listening on {host}:{port} after {timeout:.0f}s"
            raise process.fail(message) if process else ProcessError(message)
        time.sleep(_POLL)


def wait_for_url(
    url: str,
    *,
    timeout: float = 30.0,
    verify: ssl.SSLContext | str | bool = True,
    cert: tuple[str, str] | None = None,
    ok_status: Sequence[int] = (200,),
    process: ManagedProcess | None = None,
) -> httpx.Response:
    """Wait until GET ``url`` returns a status in ``ok_status``; return the response."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    verify = ssl_context(verify, cert)
    with httpx.Client(verify=verify, timeout=5) as client:
        while True:
            if process is not None:
                process.check_running()
            try:
                response = client.get(url)
                if response.status_code in ok_status:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                message = f"{url} not ready after {timeout:.0f}s (last: {last})"
                raise process.fail(message) if process else ProcessError(message)
            time.sleep(0.1)
