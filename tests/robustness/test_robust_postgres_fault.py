"""PostgreSQL restarted under two repository replicas while clients download through both
and a renewal is pending: exactly one new certificate for the renewal, every key
delivery a client received is recorded, and a request the outage fails is answered 503 +
Retry-After (retry later), never 500."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from repository_harness import RepoProcess, base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient, AcmeClientError
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs

NAMES = ["ha.example.test"]


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.text(sql)).scalar_one())


async def _downloads(repos: list[RepoProcess], eab: tuple[str, str], stop: asyncio.Event,
                     tally: dict[str, int],
                     server_errors: list[tuple[int | None, str, float | None]]) -> None:
    clients = []
    for r in repos:
        c = AcmeClient(r.directory_url, crypto.generate_private_key(), verify=str(r.ca_path),
                       timeout=10)
        await c.__aenter__()
        await c.new_account(eab=eab)
        clients.append(c)
    try:
        i = 0
        while not stop.is_set():
            c = clients[i % len(clients)]
            i += 1
            tally["attempts"] += 1
            try:
                chain, key = await c.download_certificate(NAMES)
            except Exception as exc:  # the database is away: count it and go on
                tally["errors"] += 1
                tally.setdefault(type(exc).__name__, 0)
                tally[type(exc).__name__] += 1
                if isinstance(exc, AcmeProblem) and not isinstance(exc, AcmeClientError):
                    # The server answered (not a transport failure): keep what it said.
                    server_errors.append((exc.status, exc.short_type, exc.retry_after))
                await asyncio.sleep(0.3)
                continue
            assert crypto.public_key_matches(key, crypto.parse_pem_chain(chain)[0])
            tally["ok"] += 1
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def test_postgres_restart_under_two_replicas(tmp_path: Path, postgres: Any) -> None:
    db_url = postgres.new_database("robust_restart")
    ports = [procs.free_port(), procs.free_port()]
    paths = []
    for n, port in enumerate(ports):
        cfg = base_config(tmp_path, port, storage={"url": db_url},
                          issuers=[{"name": "local", "type": "local-ca", "lifetime": "1h"}],
                          certificates=[{"name": "web", "dnsNames": NAMES, "issuer": "local"}],
                          tenants=[{"name": "team", "download": ["web"]}])
        paths.append(write_config(tmp_path, cfg, f"replica-{n}.yaml"))
    eab = create_tenant(tmp_path, paths[0], "team")
    engine = sa.create_engine(db_url, pool_pre_ping=True)
    certs = "select count(*) from certificates where managed_name = 'web'"
    try:
        with running(tmp_path, paths[0], ports[0], "replica-0") as a, \
                running(tmp_path, paths[1], ports[1], "replica-1") as b:
            for _ in range(120):
                if _count(engine, certs):
                    break
                await asyncio.sleep(0.5)
            assert _count(engine, certs) == 1
            tally = {"attempts": 0, "ok": 0, "errors": 0}
            stop = asyncio.Event()
            server_errors: list[tuple[int | None, str, float | None]] = []
            task = asyncio.create_task(_downloads([a, b], eab, stop, tally, server_errors))
            await asyncio.sleep(3)
            before_restart = tally["ok"]
            cli(tmp_path, paths[0], "renew", "web")  # pending while the database goes away
            started = time.monotonic()
            await asyncio.to_thread(postgres.restart)
            restart_s = time.monotonic() - started
            for _ in range(120):
                if _count(engine, certs) >= 2:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(5)  # more renewal passes of both replicas
            stop.set()
            await task
            for r in (a, b):
                r.proc.check_running()
        renewed = _count(engine, certs)
        delivered = _count(engine, "select count(*) from deliveries")
    finally:
        engine.dispose()
    print(f"\npostgres restart {restart_s:.1f}s; downloads {tally}; "
          f"certificates {renewed}; deliveries {delivered}; server errors {server_errors}")
    outage = [e for e in server_errors if (e[0] or 0) >= 500]
    assert all(status == 503 and retry for status, _, retry in outage), (
        f"the outage must answer 503 + Retry-After, not 500: {outage}")
    assert renewed == 2, f"{renewed - 1} certificates for one renewal"
    assert tally["ok"] > before_restart, "downloads resumed after the restart"
    # Every key a client received is recorded; at most the attempts that failed after the
    # delivery was written (the answer lost) add rows a client never saw.
    assert tally["ok"] <= delivered <= tally["attempts"], (tally, delivered)
