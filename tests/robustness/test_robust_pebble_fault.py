"""Pebble (the upstream CA) stopped across a renewal window, through real processes: the
current certificate keeps being downloaded, the failure and its backoff are visible in the
store, the inventory and the repository's /metrics, and renewal succeeds once Pebble is
back (Pebble keeps no state across a restart, so this also proves the repository registers
again when its upstream account is gone: finding R4, fixed in 93b6954)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from repository_harness import (
    RepoProcess,
    base_config,
    cli,
    create_tenant,
    running,
    write_config,
)

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.testenv import procs
from certdepot.testenv.pebble import PebbleEnv

NAMES = ["web.example.test"]


def _managed(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("select m.failures, m.next_attempt, m.last_error, c.serial "
                           "from managed m left join certificates c "
                           "on c.id = m.current_cert_id where m.name = 'web'").fetchone()
    return dict(row) if row else {}


FAILURES = "certdepot_repository_certificate_renewal_consecutive_failures"


async def _failures_metric(repo: RepoProcess) -> float:
    """The repository's own /metrics value of consecutive renewal failures of ``web``."""
    async with httpx.AsyncClient(verify=repo.ssl_context(), timeout=10) as http:
        r = await http.get(f"{repo.base_url}/metrics")
    assert r.status_code == 200, r.text
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == FAILURES and sample.labels.get("name") == "web":
                return float(sample.value)
    raise AssertionError(f"{FAILURES}{{name=\"web\"}} missing from /metrics:\n{r.text}")


async def _until(what: str, check: Any, seconds: float, proc: procs.ManagedProcess) -> Any:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        proc.check_running()
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last {last!r})\n{proc.tail(60)}")


async def test_pebble_down_across_renewal(tmp_path: Path, pebble_factory: Any) -> None:
    pebble: PebbleEnv = pebble_factory(workdir=tmp_path / "pebble")
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port,
        listeners={"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                             "selfSignedCertFile": str(tmp_path / f"tls-{port}.crt")},
                   "http01": {"address": f"127.0.0.1:{pebble.http01_port}"}},
        issuers=[{"name": "pebble", "type": "acme", "directory": pebble.directory_url,
                  "caBundle": str(pebble.ca_path), "profile": "tenminutes"}],
        # Due 5 s after issuance: the renewal window opens while Pebble is down.
        certificates=[{"name": "web", "dnsNames": NAMES, "issuer": "pebble",
                       "renewBefore": "595s"}],
        tenants=[{"name": "team", "download": ["web"]}])
    path = write_config(tmp_path, cfg)
    eab = create_tenant(tmp_path, path, "team")
    db = tmp_path / "repo.db"
    with running(tmp_path, path, port) as repo:
        first = await _until("first certificate", lambda: _managed(db).get("serial"), 120,
                             repo.proc)
        assert await _failures_metric(repo) == 0, "no failure before Pebble stops"
        pebble.stop()
        stopped = time.monotonic()
        state = await _until("a failed attempt", lambda: (
            s if (s := _managed(db)).get("failures", 0) >= 1 else None), 120, repo.proc)
        assert state["serial"] == first and state["last_error"], state
        assert state["next_attempt"] > time.time(), "a backoff is scheduled"
        metric = await _failures_metric(repo)
        assert metric >= state["failures"] >= 1, (metric, state)
        inv = cli(tmp_path, path, "inventory").stdout
        assert "last error" in inv and f"serial {first}" in inv, inv
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=eab)
            chain, key = await client.download_certificate(NAMES)
            leaf = crypto.parse_pem_chain(chain)[0]
            assert crypto.serial_hex(leaf) == first, "the current certificate is served"
            assert crypto.public_key_matches(key, leaf)
        down = time.monotonic() - stopped
        pebble.start()  # same ports; Pebble keeps no state across a restart
        renewed = await _until("renewal after Pebble returns", lambda: (
            s if (s := _managed(db).get("serial")) and s != first else None), 45, repo.proc)
        assert renewed != first
        assert await _failures_metric(repo) == 0, "a renewal resets the failure count"
        print(f"\npebble down {down:.0f}s, failures {state['failures']}, renewed {renewed}")
