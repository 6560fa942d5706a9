"""certbot (a standard ACME client) against a real repository process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from repository_harness import base_config, certbot, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.testenv import procs


def test_certbot_local_ca(tmp_path: Path) -> None:
    port = procs.free_port()
    cfg = base_config(tmp_path, port,
                      issuers=[{"name": "local", "type": "local-ca", "lifetime": "36h"}],
                      defaultIssuer="local",
                      tenants=[{"name": "team-a", "issue": ["*.a.example.test"]}])
    path = write_config(tmp_path, cfg)
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        res = certbot(tmp_path, repo, eab, ["www.a.example.test"])
        assert res.returncode == 0, res.stdout + res.stderr + repo.proc.tail()
        live = tmp_path / "certbot" / "config" / "live" / "test"
        chain = crypto.parse_pem_chain((live / "fullchain.pem").read_bytes())
        assert crypto.certificate_dns_names(chain[0]) == ["www.a.example.test"]
        life = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
        assert life.total_seconds() == 36 * 3600
        key = crypto.load_private_key((live / "privkey.pem").read_bytes())
        assert crypto.public_key_matches(key, chain[0])
        refused = certbot(tmp_path, repo, eab, ["www.other.example.test"], cert_name="other")
        assert refused.returncode != 0
        assert "rejectedIdentifier" in refused.stdout + refused.stderr


def test_no_key_material_at_rest(tmp_path: Path) -> None:
    """The raw database holds no private key: no PEM, no PKCS#8 DER of a known key."""
    port = procs.free_port()
    cfg = base_config(tmp_path, port,
                      issuers=[{"name": "local", "type": "local-ca"}],
                      certificates=[{"name": "web", "dnsNames": ["web.example.test"],
                                     "issuer": "local"}])
    path = write_config(tmp_path, cfg)
    with running(tmp_path, path, port) as repo:
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sqlite3.connect(tmp_path / "repo.db") as db:
                n = db.execute("select count(*) from certificates where key is not null"
                               ).fetchone()[0]
            if n:
                break
            time.sleep(0.5)
        assert n == 1, repo.proc.tail()
        # While the server runs, recent writes live in the WAL file (a killed server leaves
        # it behind), so it is read too.
        raw_running = _raw_store_bytes(tmp_path)
    raw = _raw_store_bytes(tmp_path)
    for image in (raw_running, raw):
        assert b"PRIVATE KEY" not in image
    with sqlite3.connect(tmp_path / "repo.db") as db:
        chain = db.execute("select chain_pem from certificates").fetchone()[0]
        blobs = [r[0] for r in db.execute("select key from certificates")]
    assert chain and all(bytes(b).startswith(b"cd1") for b in blobs)
    # PKCS#8 DER of an EC P-256 key starts with this fixed header: it must not appear.
    pkcs8_p256 = bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107")
    assert pkcs8_p256 not in raw and pkcs8_p256 not in raw_running


def _raw_store_bytes(directory: Path) -> bytes:
    """The database file and its SQLite companions (-wal, -journal), as they are on disk."""
    files = sorted(directory.glob("repo.db*"))
    assert files, f"no database in {directory}"
    return b"".join(f.read_bytes() for f in files)
