"""Issue 15 items 5, 10, 11 and 12 against a real ``certdepot repository serve`` over TLS:

- every leaf the local CA issues, from every path (plain, download-managed, delegated,
  STAR), passes ``openssl verify -x509_strict``; a control leaf with an empty subject and
  a non-critical SAN fails it, so the check can fail;
- the subject is built from policy: CN = the first DNS name, never the CSR's O/OU; a first
  name over 64 characters gives an empty subject and a critical SAN;
- the SQLite database and its -wal/-shm files are 0600;
- a configuration whose CSR template RFC 9115's schema rejects does not load.
(Items 3, 4, 8 and 13 run over TLS as hostile cases: test_robust_hostile_process.py.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hostile import TEMPLATE, RClient, World, build_world, certificates_config, tenants_config
from repository_harness import base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto, csr_template, jws
from certdepot.repository import certstore
from certdepot.repository.store import Store
from certdepot.repository.tenants import EabCredentials
from certdepot.testenv import procs


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise AssertionError("openssl not found: install it (Debian: apt-get install openssl)")
    return path


def strict_verify(tmp: Path, leaf: x509.Certificate, root: x509.Certificate) -> str:
    """``openssl verify -x509_strict`` of ``leaf`` under ``root``; its output, '' if OK."""
    (tmp / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    res = subprocess.run([_openssl(), "verify", "-x509_strict", "-CAfile", str(tmp / "root.pem"),
                          str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)
    return "" if res.returncode == 0 else (res.stdout + res.stderr).strip()


def _control_leaf() -> tuple[x509.Certificate, x509.Certificate]:
    """What the local CA issued before the fix: empty subject, non-critical SAN."""
    ca_key = crypto.generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "control CA")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(ski, critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    key = crypto.generate_private_key()
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example.test")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return leaf, root


async def _chain(c: RClient, url: str) -> list[x509.Certificate]:
    r = await c.post(url, None)
    assert r.status_code == 200, r.text
    return crypto.parse_pem_chain(r.text)


async def _plain(w: World, name: str, **subject: str) -> list[x509.Certificate]:
    r = await w.a.new_order([name])
    assert r.status_code == 201, r.text
    der = crypto.build_csr(crypto.generate_private_key(), [name], subject=subject or None)
    f = await w.a.post(r.json()["finalize"], {"csr": jws.b64encode(der)})
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    return await _chain(w.a, f.json()["certificate"])


async def _delegated(w: World, name: str, **extra: object) -> list[x509.Certificate]:
    r = await w.a.new_order([name], delegation=w.refs["a_deleg"], **extra)
    assert r.status_code == 201, r.text
    der = csr_template.build_csr_for_template(TEMPLATE, crypto.generate_private_key(), [name])
    f = await w.a.post(r.json()["finalize"], {"csr": jws.b64encode(der)})
    assert f.status_code == 200, f.text
    order = f.json()
    for _ in range(50):
        if order["status"] == "valid":
            break
        await asyncio.sleep(0.2)
        order = (await w.a.post(r.headers["Location"], None)).json()
    assert order["status"] == "valid", order
    return await _chain(w.a, order.get("star-certificate") or order["certificate"])


async def _leaves(w: World) -> dict[str, list[x509.Certificate]]:
    dl = await _chain(w.a, w.refs["dl_cert"])
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "plain": await _plain(w, "p1.a.example.test", organization="Evil Corp",
                              organizationalUnit="Ops"),
        "plain-long-first-name": await _plain(w, "x" * 60 + ".a.example.test"),
        "download-managed": dl,
        "delegated": await _delegated(w, "cdn-11.example.test"),
        "star": await _delegated(w, "cdn-12.example.test", **{"auto-renewal": {
            "end-date": end, "lifetime": 86400}}),
    }


def _check_profile(path: str, leaf: x509.Certificate) -> None:
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = san.value.get_values_for_type(x509.DNSName)
    assert not leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME), path
    assert not leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME), path
    if len(leaf.subject) == 0:
        assert san.critical, f"{path}: empty subject needs a critical SAN"
        assert len(names[0]) > 64, f"{path}: empty subject although the CN would fit"
    else:
        cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert len(leaf.subject) == 1 and [a.value for a in cns] == [names[0]], leaf.subject
        assert not san.critical, path


def _db_modes(workdir: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in workdir.iterdir()
            if p.name.startswith("repo.db")}


async def test_issued_leaves_are_strict_rfc5280_and_files_private(tmp_path: Path) -> None:
    leaf, root = _control_leaf()
    control = strict_verify(tmp_path, leaf, root)
    assert control, "openssl -x509_strict accepted an empty subject with a non-critical SAN"

    port = procs.free_port()
    old_umask = os.umask(0o022)
    cfg = base_config(tmp_path, port,
                      issuers=[{"name": "local", "type": "local-ca", "lifetime": "2d"}],
                      defaultIssuer="local", certificates=certificates_config(),
                      tenants=tenants_config())
    path = write_config(tmp_path, cfg)
    try:
        creds = {t: EabCredentials(t, *create_tenant(tmp_path, path, t))
                 for t in ("team-a", "team-b")}
        store = Store(f"sqlite:///{tmp_path / 'repo.db'}")
        with running(tmp_path, path, port) as proc:
            for _ in range(100):
                if certstore.current_managed(store, "web") is not None:
                    break
                await asyncio.sleep(0.2)
            trust = ssl.create_default_context(cafile=str(proc.ca_path))
            async with httpx.AsyncClient(verify=trust, timeout=30) as http:
                w = await build_world(http, proc.base_url, store, creds,
                                      lease_expiry_moves=True)
                leaves = await _leaves(w)
            # While the server runs: its WAL and shared-memory files exist (a clean stop
            # checkpoints and removes them).
            modes = _db_modes(tmp_path)
        store.close()
    finally:
        os.umask(old_umask)

    failures = {}
    for what, chain in leaves.items():
        _check_profile(what, chain[0])
        out = strict_verify(tmp_path, chain[0], chain[-1])
        if out:
            failures[what] = out
    assert not failures, failures
    assert len(leaves["plain-long-first-name"][0].subject) == 0

    assert {"repo.db", "repo.db-wal", "repo.db-shm"} <= set(modes), modes
    assert set(modes.values()) == {"0o600"}, modes


@pytest.mark.parametrize(("change", "why"), [
    ({"SignatureType": None}, "SignatureType"),
    ({"namedCurve": None}, "namedCurve"),
    ({"SignatureType": "ecdsa-with-SHA1"}, "SignatureType"),
])
def test_a_template_the_rfc_schema_rejects_does_not_load(tmp_path: Path, change: dict[str, object],
                                                         why: str) -> None:
    key_type = {k: v for k, v in {**TEMPLATE["keyTypes"][0], **change}.items() if v is not None}
    tenants = tenants_config()
    tenants[0]["delegations"][0]["csrTemplate"] = {**TEMPLATE, "keyTypes": [key_type]}
    cfg = base_config(tmp_path, procs.free_port(),
                      issuers=[{"name": "local", "type": "local-ca"}], defaultIssuer="local",
                      certificates=certificates_config(), tenants=tenants)
    res = cli(tmp_path, write_config(tmp_path, cfg), "tenant", "create", "team-a", check=False)
    assert res.returncode != 0, res.stdout
    assert "csrTemplate" in res.stderr + res.stdout and why in res.stderr + res.stdout, res.stderr
