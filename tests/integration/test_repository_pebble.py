"""The repository with Pebble as its upstream CA, through real processes.

Covers issue 4 (upstream issuance over http-01 and dns-01 with RFC 2136, certbot through the
repository to Pebble) and issue 5 Fig. 2 (the repository obtains a certificate from Pebble, a
client downloads it, a forced renewal is signalled by ARI and a second download returns the
new serial).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

from repository_harness import (
    base_config,
    certbot,
    cli,
    create_tenant,
    running,
    write_config,
)

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.testenv import procs
from certdepot.testenv.dns import DnsServer
from certdepot.testenv.pebble import PebbleEnv


def _wait_current(db: Path, name: str, timeout: float = 180, proc: Any = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            row = conn.execute("select c.serial from managed m join certificates c "
                               "on c.id = m.current_cert_id where m.name = ?",
                               (name,)).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.5)
    raise AssertionError(f"{name} not obtained in {timeout}s\n" + (proc.tail(80) if proc else ""))


def _acme_issuer(pebble: PebbleEnv, **extra: Any) -> dict[str, Any]:
    issuer: dict[str, Any] = {"name": "pebble", "type": "acme",
                              "directory": pebble.directory_url,
                              "caBundle": str(pebble.ca_path),
                              # Pebble picks a random profile for orders naming none.
                              "profile": "default", **extra}
    if pebble.eab:
        kid, key = next(iter(pebble.eab.items()))
        issuer["eab"] = {"kid": kid, "hmacKey": key}
    return issuer


async def test_pebble_http01_download_renew_and_certbot(tmp_path: Path,
                                                        pebble_eab: PebbleEnv) -> None:
    pebble = pebble_eab
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port,
        listeners={"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                             "selfSignedCertFile": str(tmp_path / f"tls-{port}.crt")},
                   "http01": {"address": f"127.0.0.1:{pebble.http01_port}"}},
        issuers=[_acme_issuer(pebble)],
        defaultIssuer="pebble",
        certificates=[{"name": "web", "dnsNames": ["web.example.test", "www.example.test"],
                       "issuer": "pebble"}],
        tenants=[{"name": "team-a", "download": ["web"], "issue": ["*.a.example.test"]},
                 {"name": "team-b"}])
    path = write_config(tmp_path, cfg)
    eab_a = create_tenant(tmp_path, path, "team-a")
    eab_b = create_tenant(tmp_path, path, "team-b")
    with running(tmp_path, path, port) as repo:
        serial1 = _wait_current(tmp_path / "repo.db", "web", proc=repo.proc)
        root = pebble.roots_pem()
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=eab_a)
            chain, key = await client.download_certificate(
                ["www.example.test", "web.example.test"], pin_root=root)
            leaf = crypto.parse_pem_chain(chain)[0]
            assert crypto.serial_hex(leaf) == serial1
            assert crypto.public_key_matches(key, leaf)
            info = await client.renewal_info(leaf)
            assert info.start > dt.datetime.now(dt.UTC)

            cli(tmp_path, path, "renew", "web")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                info = await client.renewal_info(leaf)
                if info.start <= dt.datetime.now(dt.UTC):
                    break
                await asyncio.sleep(1)
            assert info.start <= dt.datetime.now(dt.UTC), repo.proc.tail(60)
            chain2, key2 = await client.download_certificate(
                ["web.example.test", "www.example.test"], pin_root=root)
            leaf2 = crypto.parse_pem_chain(chain2)[0]
            assert leaf2.serial_number != leaf.serial_number
            assert crypto.public_key_matches(key2, leaf2)

        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as other:
            await other.new_account(eab=eab_b)
            try:
                await other.download_certificate(["web.example.test", "www.example.test"])
            except Exception as exc:
                assert "unauthorized" in str(exc)
            else:
                raise AssertionError("team-b downloaded a certificate it was not granted")

        # certbot through the repository, issued upstream by Pebble
        res = certbot(tmp_path, repo, eab_a, ["api.a.example.test"])
        assert res.returncode == 0, res.stdout + res.stderr[-3000:] + repo.proc.tail()
        live = tmp_path / "certbot" / "config" / "live" / "test"
        got = crypto.parse_pem_chain((live / "fullchain.pem").read_bytes())
        assert crypto.certificate_dns_names(got[0]) == ["api.a.example.test"]
        crypto.verify_chain(got, crypto.parse_pem_chain(root))

    inv = cli(tmp_path, path, "inventory").stdout
    assert f"serial {serial1}" in inv and "tenant team-a" in inv, inv
    assert inv.count("-> tenant team-a") == 2, inv


async def test_pebble_dns01_rfc2136(tmp_path: Path, dns_server: DnsServer,
                                    pebble_factory: Any) -> None:
    pebble = pebble_factory(dns_server=f"{dns_server.address}:{dns_server.port}")
    zone = dns_server.zone.rstrip(".")
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port,
        issuers=[_acme_issuer(pebble, challenge={
            "type": "dns-01", "server": dns_server.address, "port": dns_server.port,
            "zone": dns_server.zone,
            "tsig": {"name": dns_server.tsig_name, "secret": dns_server.tsig_secret,
                     "algorithm": dns_server.tsig_algorithm}})],
        certificates=[{"name": "wild", "dnsNames": [f"*.svc.{zone}", f"svc.{zone}"],
                       "issuer": "pebble"}])
    path = write_config(tmp_path, cfg)
    with running(tmp_path, path, port) as repo:
        _wait_current(tmp_path / "repo.db", "wild", proc=repo.proc)
    with sqlite3.connect(tmp_path / "repo.db") as conn:
        pem = conn.execute("select chain_pem from certificates").fetchone()[0]
    names = crypto.certificate_dns_names(crypto.parse_pem_chain(pem)[0])
    assert sorted(names) == sorted([f"*.svc.{zone}", f"svc.{zone}"])
