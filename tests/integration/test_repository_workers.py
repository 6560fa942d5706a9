"""``workers: 2``: one repository, two serving processes on one SQLite file and one port
(SO_REUSEPORT). Downloads through both, one managed certificate issued (renewal held by one
worker through the store's lease), and the supervisor stops the pool as a whole."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from repository_harness import (
    CERTDEPOT,
    ROOT,
    base_config,
    create_tenant,
    kek_env,
    running,
    write_config,
)

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.testenv import procs

NAMES = ["pool.example.test", "www.pool.example.test"]


def _config(tmp: Path, port: int, **extra: Any) -> dict[str, Any]:
    return base_config(
        tmp, port, workers=2, issuers=[{"name": "local", "type": "local-ca"}],
        defaultIssuer="local",
        certificates=[{"name": "web", "dnsNames": NAMES, "issuer": "local"}],
        tenants=[{"name": "team-a", "download": ["web"]}], **extra)


def _workers(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


ESTABLISHED, LISTEN = "01", "0A"  # /proc/net/tcp's socket states


def _established(pid: int, port: int) -> int:
    """Established TCP connections on ``port`` that process ``pid`` holds."""
    return _sockets(pid, port, ESTABLISHED)


def _wait_listening(workers: list[int], port: int, timeout: float = 30) -> None:
    """Until every worker has its listening socket on ``port``: the kernel spreads new
    connections only over the sockets bound so far, and the directory answers as soon as
    the first worker is up."""
    deadline = time.monotonic() + timeout
    while not all(_sockets(w, port, LISTEN) for w in workers):
        assert time.monotonic() < deadline, {w: _sockets(w, port, LISTEN) for w in workers}
        time.sleep(0.2)


def _sockets(pid: int, port: int, state: str) -> int:
    """TCP sockets on local ``port`` in ``state`` that process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state \
                    and cols[9] in inodes:
                count += 1
    return count


async def _downloads(url: str, ca: Path, eab: tuple[str, str], clients: int, port: int,
                     workers: list[int]) -> tuple[list[tuple[str, crypto.PrivateKey]],
                                                  dict[int, int]]:
    """``clients`` clients, each on its own connection, download once; how many of the
    connections each worker held meanwhile."""
    pool = [AcmeClient(url, crypto.generate_private_key(), verify=str(ca))
            for _ in range(clients)]
    try:
        await asyncio.gather(*(c.new_account(eab=eab) for c in pool))
        held = {w: _established(w, port) for w in workers}
        got = await asyncio.gather(*(c.download_certificate(NAMES) for c in pool))
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return list(got), held


async def _first_download(url: str, ca: Path, eab: tuple[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:  # until renewal obtained the certificate
        try:
            await _downloads(url, ca, eab, 1, 0, [])
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_two_workers_share_port_and_store(tmp_path: Path) -> None:
    port = procs.free_port()
    path = write_config(tmp_path, _config(tmp_path, port))
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        workers = _workers(repo.proc.pid)
        assert len(workers) == 2, repo.proc.tail()
        _wait_listening(workers, port)
        asyncio.run(_first_download(repo.directory_url, repo.ca_path, eab))
        got, held = asyncio.run(_downloads(repo.directory_url, repo.ca_path, eab, 16, port,
                                           workers))
        assert len(got) == 16
        chains = {chain for chain, _ in got}
        assert len(chains) == 1  # one certificate, issued once for both workers
        leaf = crypto.parse_pem_chain(chains.pop())[0]
        assert all(crypto.public_key_matches(key, leaf) for _, key in got)
        # 16 connections spread by the kernel: both workers hold some of them.
        assert sum(held.values()) == 16 and all(held.values()), held
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'repo.db'}")
        try:
            with engine.connect() as c:
                issued = c.execute(sa.text(
                    "select count(*) from certificates where managed_name = 'web'")
                ).scalar_one()
        finally:
            engine.dispose()
        assert issued == 1
    assert not any(Path(f"/proc/{w}").exists() and _alive(w) for w in workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_ending_stops_the_pool(tmp_path: Path) -> None:
    port = procs.free_port()
    path = write_config(tmp_path, _config(tmp_path, port))
    with running(tmp_path, path, port) as repo:
        first, second = _workers(repo.proc.pid)
        os.kill(first, signal.SIGKILL)
        assert repo.proc.popen.wait(timeout=40) == 128 + signal.SIGKILL
        deadline = time.monotonic() + 10
        while _alive(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(second)


def test_in_memory_store_refused_with_workers(tmp_path: Path) -> None:
    port = procs.free_port()
    path = write_config(tmp_path, _config(tmp_path, port, storage={"url": "sqlite://"}))
    proc = procs.start("repository", [*CERTDEPOT, "repository", "serve", "--config", str(path)],
                       log_path=tmp_path / "repository.log",
                       extra_env={**kek_env(tmp_path), "PYTHONPATH": str(ROOT / "operator")})
    try:
        assert proc.popen.wait(timeout=60) == 2
        assert "in-memory SQLite" in proc.tail()
    finally:
        proc.stop()
