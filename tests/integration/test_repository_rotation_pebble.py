"""Rotation with Pebble as the upstream CA (issue 19 (1)): ``certdepot repository rotate``
orders the replacement from Pebble with ``replaces``, and the old certificate is revoked AT
PEBBLE with the reason (checked on Pebble's management API), not only in the store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from repository_harness import base_config, cli, create_tenant, running, write_config
from test_repository_pebble import _acme_issuer, _wait_current

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.testenv import procs
from certdepot.testenv.pebble import PebbleEnv

WEB = ["rot.example.test", "www.rot.example.test"]


def _pebble_status(pebble: PebbleEnv, serial: str) -> dict[str, Any]:
    with pebble.http() as client:
        r = client.get(f"{pebble.mgmt_url}/cert-status-by-serial/{serial}")
    assert r.status_code == 200, f"Pebble does not know serial {serial}: {r.text}"
    doc: dict[str, Any] = r.json()
    return doc


async def test_rotate_revokes_at_pebble(tmp_path: Path, pebble_eab: PebbleEnv) -> None:
    pebble = pebble_eab
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port,
        listeners={"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                             "selfSignedCertFile": str(tmp_path / f"tls-{port}.crt")},
                   "http01": {"address": f"127.0.0.1:{pebble.http01_port}"}},
        issuers=[_acme_issuer(pebble)],
        certificates=[{"name": "web", "dnsNames": WEB, "issuer": "pebble"}],
        tenants=[{"name": "team-a", "download": ["web"]}])
    path = write_config(tmp_path, cfg)
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        old = _wait_current(tmp_path / "repo.db", "web", proc=repo.proc)
        assert _pebble_status(pebble, old)["Status"] == "Valid"
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=eab)
            pem, _ = await client.download_certificate(WEB)
        assert crypto.serial_hex(crypto.parse_pem_chain(pem)[0]) == old

        out = cli(tmp_path, path, "rotate", "web", "--reason", "keyCompromise").stdout
        new = re.search(r"new serial\s+(\S+)", out)
        assert new and new.group(1) != old, out
        assert f"upstream        revoked at {pebble.directory_url}" in out, out
        status = _pebble_status(pebble, old)
        assert status["Status"] == "Revoked", status
        assert status.get("Reason") in (1, "keyCompromise"), status
        assert _pebble_status(pebble, new.group(1))["Status"] == "Valid"
        # The replacement was ordered once, linked to the old one (Pebble supports ARI).
        log = repo.proc.log_path.read_text() + out
        assert "replaces refused" not in log, log[-3000:]
        # rotate returns once the replacement is current.
        assert _wait_current(tmp_path / "repo.db", "web") == new.group(1)
