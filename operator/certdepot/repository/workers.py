"""Several repository processes on one machine (``workers`` / ``serve --workers N``).

A repository process is one Python interpreter: one core at most for the JWS checks, TLS
and SQL of every request. With ``workers: N`` the command started becomes a supervisor that
prepares the store once (migrations) and starts N ``serve`` processes, each a replica as
two repositories on one PostgreSQL are (nonces, http-01 tokens, orders in the store;
renewal and the other background loops held by one of them at a time through the store's
leases). Each worker binds every listener with ``SO_REUSEPORT``, so the kernel spreads
the connections over them. The supervisor forwards SIGTERM/SIGINT and, when one worker
ends, stops the others and exits with its status (the pod is restarted whole).

In-memory SQLite cannot be shared by processes and is refused with ``workers`` > 1; a
SQLite file is shared (WAL, a busy timeout: writers take turns), PostgreSQL scales
further.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from certdepot.repository.bootstrap import open_store
from certdepot.repository.config import Config, ConfigError

log = logging.getLogger("certdepot.repository.workers")

#: The hidden ``serve`` option a worker is started with: bind with SO_REUSEPORT, start
#: no workers of its own.
WORKER_OPTION = "--pool-worker"


def check(config: Config, workers: int) -> None:
    if workers > 1 and config.storage.database_url in ("sqlite://", "sqlite:///:memory:"):
        raise ConfigError("workers: an in-memory SQLite store cannot be shared by several "
                          "processes; use a SQLite file or PostgreSQL")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket other workers may bind too (the kernel balances connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def supervise(config: Config, config_path: Path, log_level: str, workers: int) -> int:
    """Prepare the store, run ``workers`` serve processes until one ends; its status."""
    check(config, workers)
    store, _ = open_store(config)  # migrations once, not raced by N processes
    store.close()
    argv = [sys.executable, "-m", "certdepot.cli", "repository", "serve", "--config",
            str(config_path), "--log-level", log_level, WORKER_OPTION]
    children = _start(argv, workers)
    log.info("repository: %d workers started (pids %s)", workers,
             ", ".join(str(c.pid) for c in children))

    def forward(sig: int, _frame: FrameType | None) -> None:
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                c.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    status = _wait_first(children)
    forward(signal.SIGTERM, None)
    for c in children:
        try:
            c.wait(timeout=30)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
    return status


def _start(argv: Sequence[str], workers: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(list(argv)) for _ in range(workers)]


def _wait_first(children: Sequence[subprocess.Popen[bytes]]) -> int:
    """Wait until one worker ends; its exit status (128 + signal when killed)."""
    pids = {c.pid for c in children}
    while True:
        pid, raw = os.wait()
        if pid in pids:
            code = os.waitstatus_to_exitcode(raw)
            for c in children:
                if c.pid == pid:
                    c.returncode = code  # reaped here: Popen must not wait for it again
            log.warning("repository worker %d ended with status %d; stopping the others",
                        pid, code)
            return code if code >= 0 else 128 - code
