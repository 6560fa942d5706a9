"""Two repository processes on one PostgreSQL: one upstream order, shared nonces and
http-01 tokens, and certbot served through either replica."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from repository_harness import base_config, certbot, create_tenant, running, write_config

from certdepot.acme import crypto, jws
from certdepot.testenv import procs
from certdepot.testenv.pebble import PebbleEnv


def _config(tmp: Path, port: int, db_url: str, pebble: PebbleEnv, http01: bool
            ) -> dict[str, Any]:
    kid, key = next(iter(pebble.eab.items()))
    listeners: dict[str, Any] = {"https": {
        "address": f"127.0.0.1:{port}", "selfSigned": True,
        "selfSignedCertFile": str(tmp / f"tls-{port}.crt")}}
    if http01:
        listeners["http01"] = {"address": f"127.0.0.1:{pebble.http01_port}"}
    return base_config(
        tmp, port, listeners=listeners, storage={"url": db_url},
        issuers=[{"name": "pebble", "type": "acme", "directory": pebble.directory_url,
                  "caBundle": str(pebble.ca_path), "eab": {"kid": kid, "hmacKey": key},
                  "profile": "default"}],
        defaultIssuer="pebble",
        certificates=[{"name": "web", "dnsNames": ["ha.example.test"], "issuer": "pebble"}],
        tenants=[{"name": "team-a", "download": ["web"], "issue": ["*.a.example.test"]}])


def test_two_replicas_one_upstream_order(tmp_path: Path, postgres: Any,
                                         pebble_eab: PebbleEnv) -> None:
    db_url = postgres.new_database("replicas")
    port_a, port_b = procs.free_port(), procs.free_port()
    path_a = write_config(tmp_path, _config(tmp_path, port_a, db_url, pebble_eab, True), "a.yaml")
    path_b = write_config(tmp_path, _config(tmp_path, port_b, db_url, pebble_eab, False),
                          "b.yaml")
    eab = create_tenant(tmp_path, path_a, "team-a")
    engine = sa.create_engine(db_url)
    try:
        with running(tmp_path, path_a, port_a, "replica-a") as a, \
                running(tmp_path, path_b, port_b, "replica-b") as b:
            deadline = time.monotonic() + 90
            count = 0
            while time.monotonic() < deadline:
                with engine.connect() as c:
                    count = c.execute(sa.text(
                        "select count(*) from certificates where managed_name = 'web'")
                    ).scalar_one()
                if count:
                    break
                time.sleep(0.5)
            assert count == 1, a.proc.tail() + b.proc.tail()
            time.sleep(4)  # several renewal passes of both replicas
            with engine.connect() as c:
                assert c.execute(sa.text(
                    "select count(*) from certificates where managed_name = 'web'")
                ).scalar_one() == 1
                accounts = c.execute(sa.text(
                    "select count(*) from blobs where name like 'acme-issuer:pebble:account-url'")
                ).scalar_one()
            assert accounts == 1

            # A nonce from replica A is good (once) at replica B.
            nonce = httpx.head(f"{a.base_url}/acme/new-nonce",
                               verify=a.ssl_context()).headers["Replay-Nonce"]
            key = crypto.generate_private_key()
            url = f"{b.base_url}/acme/new-account"
            for expected in ("accountDoesNotExist", "badNonce"):
                body = jws.sign({"onlyReturnExisting": True}, key, url=url, nonce=nonce)
                r = httpx.post(url, content=json.dumps(body), verify=b.ssl_context(),
                               headers={"Content-Type": "application/jose+json"})
                assert r.json()["type"].endswith(expected), r.text

            # certbot through replica B; the http-01 token of B's upstream order is served
            # by replica A's listener out of the shared store.
            res = certbot(tmp_path, b, eab, ["ha.a.example.test"])
            assert res.returncode == 0, res.stdout + res.stderr[-3000:] + b.proc.tail()
    finally:
        engine.dispose()


def test_survives_database_restart(tmp_path: Path, postgres: Any) -> None:
    """Pooled connections break when PostgreSQL restarts; the repository reconnects and
    nonces, accounts and issuance keep working (local CA, no upstream involved)."""
    db_url = postgres.new_database("restart")
    port = procs.free_port()
    cfg = base_config(tmp_path, port, storage={"url": db_url},
                      issuers=[{"name": "local", "type": "local-ca"}], defaultIssuer="local",
                      tenants=[{"name": "team-a", "issue": ["*.a.example.test"]}])
    path = write_config(tmp_path, cfg)
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        assert certbot(tmp_path, repo, eab, ["one.a.example.test"], cert_name="one"
                       ).returncode == 0
        postgres.restart()
        ok = False
        for _ in range(3):  # the first request may meet a broken pooled connection
            r = httpx.head(f"{repo.base_url}/acme/new-nonce", verify=repo.ssl_context())
            ok = r.status_code == 200
            if ok:
                break
            time.sleep(1)
        assert ok, repo.proc.tail()
        res = certbot(tmp_path, repo, eab, ["two.a.example.test"], cert_name="two")
        assert res.returncode == 0, res.stdout + res.stderr[-2000:] + repo.proc.tail()
