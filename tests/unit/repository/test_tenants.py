"""Tenant administration (issue 20, item 6) against the in-process app: rotate and delete
an EAB credential, what accounts are told when they have no policy to act under, the admin
API's tenant routes, and the store migration adding ``tenants.rotated``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from repository_testkit import BASE, Client, Env, make_config

from certdepot.acme import jws
from certdepot.repository import renewal, tenants
from certdepot.repository import store as tables
from certdepot.repository.store import MIGRATIONS, Store

TOKEN = "admin-token-" + "t" * 40


def _problem(r: httpx.Response, status: int, short: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    doc = r.json()
    assert doc["type"].endswith(":" + short), doc
    detail: str = doc["detail"]
    return detail


async def test_rotate_old_key_binds_nothing_old_accounts_keep_working(env: Env) -> None:
    old = env.creds["team-a"]
    before = await env.tenant_client("team-a")
    new = tenants.rotate_tenant(env.repo.store, env.repo.vault, "team-a")
    assert new.kid != old.kid and new.hmac_key != old.hmac_key and new.tenant == "team-a"

    late = env.client()
    _problem(await late.register(old), 403, "unauthorized")
    assert (await late.register(new)).status_code == 201

    # Bound by tenant name, not by key: both accounts keep their policy.
    for c in (before, late):
        r = await c.new_order(["x.a.example.test"])
        assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    row = env.repo.store.get(tables.tenants, "team-a")
    assert row is not None and row["rotated"] is not None and row["eab_kid"] == new.kid
    with pytest.raises(tenants.NoSuchTenant):
        tenants.rotate_tenant(env.repo.store, env.repo.vault, "nobody")


async def test_delete_refused_while_bound_then_forced(env: Env) -> None:
    c = await env.tenant_client("team-a")
    ready = (await c.new_order(["y.a.example.test"])).json()
    with pytest.raises(tenants.TenantHasAccounts):
        tenants.delete_tenant(env.repo.store, "team-a")
    assert env.repo.store.get(tables.tenants, "team-a") is not None
    assert (await c.new_order(["x.a.example.test"])).status_code == 201

    assert tenants.delete_tenant(env.repo.store, "team-a", force=True) == 1
    assert env.repo.store.get(tables.tenants, "team-a") is None
    # The next request of its account is refused, saying why; so is its open order.
    detail = _problem(await c.new_order(["x.a.example.test"]), 403, "unauthorized")
    assert "tenant 'team-a' was deleted" in detail
    csr = jws.b64encode(b"\x30\x00")
    _problem(await c.post(ready["finalize"], {"csr": csr}), 403, "unauthorized")
    # Its key binds no new account either.
    _problem(await env.client().register(env.creds["team-a"]), 403, "unauthorized")
    with pytest.raises(tenants.NoSuchTenant):
        tenants.delete_tenant(env.repo.store, "team-a")


async def test_an_account_left_valid_is_refused_and_not_inherited(env: Env) -> None:
    c = await env.tenant_client("team-a")
    # As if registered while the tenant was being deleted: the tenant row is what counts,
    # at every step.
    with env.repo.store.tx() as conn:
        conn.execute(tables.tenants.delete().where(tables.tenants.c.name == "team-a"))
    detail = _problem(await c.new_order(["x.a.example.test"]), 403, "unauthorized")
    assert "tenant 'team-a' was deleted" in detail
    # Deleted with --force and created again: the old accounts stay deactivated.
    d = await env.tenant_client("team-b")
    tenants.delete_tenant(env.repo.store, "team-b", force=True)
    fresh = tenants.create_tenant(env.repo.store, env.repo.vault, "team-b")
    detail = _problem(await d.new_order(["x.b.example.test"]), 403, "unauthorized")
    assert "deactivated" in detail
    e = env.client()
    assert (await e.register(fresh)).status_code == 201
    assert (await e.new_order(["x.b.example.test"])).status_code == 201


async def test_tenant_without_policy_is_told_so(env_factory: Any) -> None:
    env: Env = await env_factory()
    creds = tenants.create_tenant(env.repo.store, env.repo.vault, "orphan")
    c = env.client()
    assert (await c.register(creds)).status_code == 201, "EAB binds without a policy"
    await renewal.run_once(env.repo)
    for extra in ({}, {"download": True}):
        names = ["www.example.test", "example.test"] if extra else ["x.a.example.test"]
        detail = _problem(await c.new_order(names, **extra), 403, "unauthorized")
        assert "tenant 'orphan' has no policy" in detail, detail
        assert "not bound" not in detail
    detail = _problem(await c.new_order(["d.example.test"], delegation=f"{BASE}/x"), 403,
                      "unauthorized")
    assert "has no policy" in detail


async def test_policy_removed_after_the_order_is_told_so(env: Env) -> None:
    c = await env.tenant_client("team-a")
    order = (await c.new_order(["x.a.example.test"])).json()
    env.repo.config = make_config(tenants=[{"name": "team-b", "issue": ["*.b.example.test"]}])
    csr = jws.b64encode(b"\x30\x00")
    detail = _problem(await c.post(order["finalize"], {"csr": csr}), 403, "unauthorized")
    assert "tenant 'team-a' has no policy" in detail, detail


async def test_unbound_account_is_told_so(env_factory: Any) -> None:
    env: Env = await env_factory(eabRequired=False)
    await renewal.run_once(env.repo)
    c = env.client()
    assert (await c.register(None)).status_code == 201
    for names, extra in ((["x.a.example.test"], {}),
                         (["www.example.test", "example.test"], {"download": True})):
        detail = _problem(await c.new_order(names, **extra), 403, "unauthorized")
        assert "not bound to a tenant" in detail and "External Account Binding" in detail
    # What eabRequired: false is for: a downloadByProof certificate, after proof.
    r = await c.new_order(["proof.example.test"], download=True)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text


async def test_list(env: Env) -> None:
    await env.tenant_client("team-a")
    c = await env.tenant_client("team-a")
    r = await c.post(c.kid or "", {"status": "deactivated"})
    assert r.status_code == 200
    tenants.create_tenant(env.repo.store, env.repo.vault, "orphan")
    env.repo.config = make_config(tenants=[
        {"name": "team-a", "download": ["web"]}, {"name": "planned"}])
    rows = {r["name"]: r for r in tenants.list_tenants(env.repo.config, env.repo.store)}
    assert set(rows) == {"team-a", "team-b", "orphan", "planned"}
    assert rows["team-a"]["accounts"] == 1 and rows["team-a"]["accountsDeactivated"] == 1
    assert rows["team-a"]["policy"] and rows["team-a"]["eabKeyId"] == env.creds["team-a"].kid
    assert not rows["orphan"]["policy"] and rows["orphan"]["accounts"] == 0
    assert not rows["team-b"]["policy"]  # credentials, but the policy was removed
    assert rows["planned"]["policy"] and rows["planned"]["eabKeyId"] is None
    assert rows["planned"]["created"] is None


@pytest.mark.parametrize("name", ["", "a b", "a/b", "x" * 201, "tab\there"])
def test_bad_names_refused(env: Env, name: str) -> None:
    with pytest.raises(tenants.BadTenantName):
        tenants.create_tenant(env.repo.store, env.repo.vault, name)


async def test_admin_api_tenants(env_factory: Any, tmp_path: Path) -> None:
    closed: Env = await env_factory()  # no admin section: as if the routes did not exist
    for method, path in (("GET", ""), ("POST", ""), ("POST", "/team-a/rotate"),
                         ("DELETE", "/team-a")):
        r = await closed.http.request(method, f"{BASE}/admin/v1/tenants{path}",
                                      headers={"Authorization": f"Bearer {TOKEN}"})
        _problem(r, 404, "malformed")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env: Env = await env_factory(admin={"tokenFile": str(token_file)})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{BASE}/admin/v1/tenants"
    for method, path in (("GET", ""), ("POST", ""), ("POST", "/team-a/rotate"),
                         ("DELETE", "/team-a")):
        r = await env.http.request(method, url + path, json={"name": "x"})
        _problem(r, 401, "unauthorized")
    assert env.repo.store.get(tables.tenants, "x") is None

    doc = (await env.http.get(url, headers=auth)).json()
    assert doc["apiVersion"] == "certdepot.io/tenants/v1"
    assert {t["name"] for t in doc["tenants"]} == {"team-a", "team-b"}

    r = await env.http.post(url, headers=auth, json={"name": "team-c"})
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store", r.text
    made = r.json()
    assert made["tenant"] == "team-c" and made["policy"] is False and made["eabHmacKey"]
    c = Client(env.http)
    creds = tenants.EabCredentials("team-c", made["eabKeyId"], made["eabHmacKey"])
    assert (await c.register(creds)).status_code == 201
    _problem(await env.http.post(url, headers=auth, json={"name": "team-c"}), 409, "malformed")
    for body in ({"name": 3}, {"name": "a/b"}, [1]):
        _problem(await env.http.post(url, headers=auth, json=body), 400, "malformed")

    r = await env.http.post(f"{url}/team-c/rotate", headers=auth)
    assert r.status_code == 200 and r.json()["eabKeyId"] != made["eabKeyId"]
    _problem(await env.http.post(f"{url}/nobody/rotate", headers=auth), 404, "malformed")

    detail = _problem(await env.http.delete(f"{url}/team-c", headers=auth), 409,
                      "error:tenantHasAccounts")
    assert "1 account(s)" in detail
    r = await env.http.delete(f"{url}/team-c?force=true", headers=auth)
    assert r.json() == {"tenant": "team-c", "accountsDeactivated": 1}
    _problem(await env.http.delete(f"{url}/team-c", headers=auth), 404, "malformed")
    r = await c.new_order(["x.a.example.test"])
    assert "was deleted" in _problem(r, 403, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "", b"{"), ("POST", "", b"[" * 5000), ("POST", "", b'{"name": "\\u0000"}'),
    ("POST", "", b'{"name": "' + b"x" * 3000 + b'"}'), ("POST", "", b"x" * 10000),
    ("POST", "", b'{"name": null}'), ("POST", "/%00/rotate", b""),
    ("POST", "/" + "x" * 3000 + "/rotate", b""), ("DELETE", "/%00", b""),
    ("DELETE", "/%C3%A9?force=maybe", b""), ("GET", "?x=%00", b""),
])
async def test_admin_tenants_hostile_input(env_factory: Any, tmp_path: Path, method: str,
                                           path: str, body: bytes) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env: Env = await env_factory(admin={"tokenFile": str(token_file)})
    r = await env.http.request(method, f"{BASE}/admin/v1/tenants{path}", content=body,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["Content-Type"] == "application/problem+json"
    assert {row["name"] for row in env.repo.store.select(tables.tenants)} == {"team-a",
                                                                               "team-b"}


def test_migration_adds_rotated_to_an_older_store(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Store(f"sqlite:///{db}").migrate()
    con = sqlite3.connect(db)  # the store as version 2 left it
    con.execute("ALTER TABLE tenants DROP COLUMN rotated")
    con.execute("UPDATE schema_version SET version = 2")
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    assert store.migrate() == len(MIGRATIONS)
    store.insert(tables.tenants, name="t", eab_kid="k", eab_key=b"x", created=1.0, rotated=2.0)
    row = store.get(tables.tenants, "t")
    assert row is not None and row["rotated"] == 2.0
    store.close()


async def test_accounts_without_eab_are_bounded(env_factory: Any) -> None:
    env: Env = await env_factory(eabRequired=False, limits={"accountsWithoutEab": 2})
    for _ in range(2):
        assert (await env.client().register(None)).status_code == 201
    r = await env.client().register(None)
    assert r.status_code == 429 and r.headers["Retry-After"], r.text
    assert r.json()["type"].endswith(":rateLimited")
    await env.tenant_client("team-a")  # EAB accounts count apart
