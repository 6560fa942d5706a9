"""Tenant administration and the self-signed listener through the real repository over TLS
(issue 20, item 6): rotate and delete with the command line while the server runs and
clients are active, the same over the admin API, what an account without a policy is
told, and a selfSigned listener serving the same certificate after a restart."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from repository_harness import (
    CERTDEPOT,
    ROOT,
    RepoProcess,
    base_config,
    cli,
    create_tenant,
    running,
    write_config,
)

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import listener_tls, tenants
from certdepot.repository import store as tables
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.processconfig import HttpsListener
from certdepot.repository.store import MIGRATIONS, Store
from certdepot.testenv import procs
from certdepot.testenv.postgres import PostgresEnv

TOKEN = "admin-token-" + "y" * 40


def _config(tmp: Path, port: int, **extra: Any) -> Path:
    token = tmp / "admin-token"
    token.write_text(TOKEN)
    cfg = base_config(
        tmp, port, issuers=[{"name": "local", "type": "local-ca", "lifetime": "2d"}],
        defaultIssuer="local",
        tenants=[{"name": "team-a", "issue": ["*.a.example.test"]},
                 {"name": "team-b", "issue": ["*.b.example.test"]}],
        admin={"tokenFile": str(token)}, **extra)
    return write_config(tmp, cfg)


def _client(repo: RepoProcess) -> AcmeClient:
    return AcmeClient(repo.directory_url, crypto.generate_private_key(),
                      verify=str(repo.ca_path))


async def _issue(client: AcmeClient, name: str) -> None:
    order = await client.new_order([name])
    assert order.status == "ready", order


async def _refused(coro: Any) -> str:
    with pytest.raises(AcmeProblem) as refused:
        await coro
    assert refused.value.short_type == "unauthorized", refused.value
    assert refused.value.status == 403, refused.value
    return refused.value.detail


def _list(tmp: Path, path: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(cli(tmp, path, "tenant", "list", "--json").stdout)
    return {r["name"]: r for r in rows}


async def test_rotate_and_delete_from_the_command_line(tmp_path: Path) -> None:
    port = procs.free_port()
    path = _config(tmp_path, port)
    old = create_tenant(tmp_path, path, "team-a")
    orphan = create_tenant(tmp_path, path, "orphan")  # warned: no policy
    with running(tmp_path, path, port) as repo:
        async with _client(repo) as first, _client(repo) as late, _client(repo) as other:
            await first.new_account(eab=old)
            await _issue(first, "one.a.example.test")

            out = cli(tmp_path, path, "tenant", "rotate", "team-a").stdout
            assert "accounts already bound stay bound" in out, out
            new = _creds(out)
            assert new != old
            await _refused(late.new_account(eab=old))
            await late.new_account(eab=new)
            for c in (first, late):  # bound before and after: both keep their policy
                await _issue(c, "two.a.example.test")
            rows = _list(tmp_path, path)
            assert rows["team-a"]["accounts"] == 2 and rows["team-a"]["eabKeyId"] == new[0]
            assert rows["team-a"]["keyRotated"] is not None
            assert not rows["orphan"]["policy"] and rows["team-b"]["eabKeyId"] is None

            # A tenant that exists but has no policy is told so, not "not bound".
            await other.new_account(eab=orphan)
            detail = await _refused(other.new_order(["x.a.example.test"]))
            assert "tenant 'orphan' has no policy" in detail, detail
            plugin = _kubectl_tenants(tmp_path, repo)  # the same through the admin API
            assert plugin.returncode == 1, plugin  # accounts refused for want of a policy
            rows = {line.split()[0]: line for line in plugin.stdout.splitlines()[1:]}
            assert " NONE " in rows["orphan"] and new[0] in rows["team-a"], plugin.stdout
            assert new[1] not in plugin.stdout

            refused = cli(tmp_path, path, "tenant", "delete", "team-a", check=False)
            assert refused.returncode == 1 and "2 account(s) bound" in refused.stderr
            await _issue(first, "three.a.example.test")
            out = cli(tmp_path, path, "tenant", "delete", "team-a", "--force").stdout
            assert "2 account(s) deactivated" in out, out
            for c in (first, late):  # at their next request
                detail = await _refused(_issue(c, "four.a.example.test"))
                assert "tenant 'team-a' was deleted" in detail, detail
            assert "team-a" not in {n for n, r in _list(tmp_path, path).items()
                                    if r["eabKeyId"]}
    assert "PRIVATE KEY" not in repo.proc.log_path.read_text()
    assert new[1] not in repo.proc.log_path.read_text()


def _kubectl_tenants(tmp: Path, repo: RepoProcess, *args: str
                     ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"),
           "CERTDEPOT_ADMIN_TOKEN": TOKEN}
    return subprocess.run([*CERTDEPOT, "kubectl", "tenants", "--url", repo.directory_url,
                           "--ca-file", str(repo.ca_path), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def _creds(out: str) -> tuple[str, str]:
    fields = dict(line.split(":", 1) for line in out.splitlines() if line.startswith("eab-"))
    return fields["eab-kid"].strip(), fields["eab-hmac"].strip()


async def test_admin_api_tenants_over_tls(tmp_path: Path) -> None:
    port = procs.free_port()
    path = _config(tmp_path, port)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running(tmp_path, path, port) as repo:
        url = f"{repo.base_url}/admin/v1/tenants"
        async with httpx.AsyncClient(verify=repo.ssl_context(), timeout=60) as http:
            assert (await http.post(url, json={"name": "team-b"})).status_code == 401
            made = await http.post(url, json={"name": "team-b"}, headers=auth)
            assert made.status_code == 201 and made.json()["policy"] is True, made.text
            creds = (made.json()["eabKeyId"], made.json()["eabHmacKey"])
            async with _client(repo) as c:
                await c.new_account(eab=creds)
                await _issue(c, "x.b.example.test")
                rotated = (await http.post(f"{url}/team-b/rotate", headers=auth)).json()
                assert rotated["eabKeyId"] != creds[0]
                listed = (await http.get(url, headers=auth)).json()["tenants"]
                row = next(t for t in listed if t["name"] == "team-b")
                assert row["accounts"] == 1 and row["eabKeyId"] == rotated["eabKeyId"]
                plugin = _kubectl_tenants(tmp_path, repo, "-o", "json")
                assert plugin.returncode == 0, plugin
                assert json.loads(plugin.stdout) == listed
                await _issue(c, "y.b.example.test")
                conflict = await http.delete(f"{url}/team-b", headers=auth)
                assert conflict.status_code == 409, conflict.text
                gone = await http.delete(f"{url}/team-b?force=true", headers=auth)
                assert gone.json() == {"tenant": "team-b", "accountsDeactivated": 1}
                detail = await _refused(_issue(c, "z.b.example.test"))
                assert "was deleted" in detail, detail
    assert rotated["eabHmacKey"] not in repo.proc.log_path.read_text()


def _served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            ctx.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


async def test_self_signed_listener_survives_a_restart(tmp_path: Path) -> None:
    port = procs.free_port()
    path = _config(tmp_path, port)
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        served = _served_certificate(port)
        trust = repo.ca_path.read_bytes()
        async with _client(repo) as c:
            await c.new_account(eab=eab)
    (tmp_path / "trust.pem").write_bytes(trust)  # what a client kept from the first start
    repo.ca_path.unlink()
    with running(tmp_path, path, port) as again:
        assert _served_certificate(port) == served
        assert again.ca_path.read_bytes() == trust
        async with AcmeClient(again.directory_url, c.key,
                              verify=str(tmp_path / "trust.pem")) as same:
            await same.new_account(only_return_existing=True)
            await _issue(same, "r.a.example.test")
    # New listener names (baseUrl host): a new certificate that names them.
    cfg = _config(tmp_path, port, baseUrl=f"https://localhost.localdomain:{port}")
    with running(tmp_path, cfg, port):
        moved = _served_certificate(port)
    assert moved != served
    san = x509.load_der_x509_certificate(moved).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost.localdomain" in san.get_values_for_type(x509.DNSName)


def test_tenant_store_and_listener_certificate_on_postgres(postgres: PostgresEnv) -> None:
    """The same store code on PostgreSQL: migration 3 on a version-2 schema, delete's
    one-transaction deactivation, the sealed listener certificate shared by two stores."""
    url = postgres.new_database("tenants_" + secrets.token_hex(4))
    store = Store(url)
    store.migrate()
    with store.tx() as conn:  # the schema as version 2 left it
        conn.execute(sa.text("ALTER TABLE tenants DROP COLUMN rotated"))
        conn.execute(sa.text("UPDATE schema_version SET version = 2"))
    assert Store(url).migrate() == len(MIGRATIONS)
    vault = KeyVault(os.urandom(32))
    tenants.create_tenant(store, vault, "t")
    store.insert(tables.accounts, id="a1", thumbprint="th1", jwk={}, status="valid",
                 contact=[], tenant="t", created=1.0)
    store.insert(tables.orders, id="o1", account_id="a1", status="ready", expires=9e9,
                 data={}, cert_id=None, created=1.0)
    with pytest.raises(tenants.TenantHasAccounts):
        tenants.delete_tenant(store, "t")
    with pytest.raises(tenants.NoSuchTenant):
        tenants.rotate_tenant(store, vault, "nul\x00name")
    assert tenants.rotate_tenant(store, vault, "t").tenant == "t"
    assert tenants.delete_tenant(store, "t", force=True) == 1
    assert store.get(tables.accounts, "a1")["status"] == "deactivated"  # type: ignore[index]
    assert store.get(tables.orders, "o1")["status"] == "invalid"  # type: ignore[index]
    listener = HttpsListener(self_signed=True)
    first = listener_tls.certificate(store, vault, listener, ["127.0.0.1"])
    other = Store(url)  # another replica
    assert listener_tls.certificate(other, vault, listener, ["127.0.0.1"]) == first
    other.close()
    store.close()
