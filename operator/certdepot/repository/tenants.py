"""Tenants: EAB credentials minted by the admin, bound to the accounts that use them.

The HMAC key is needed again to verify each newAccount, so it is kept sealed (KeyVault),
not hashed. It is shown to the admin once, at creation and at each rotation.

Lifecycle (``certdepot repository tenant ...`` and the admin API):

- create: a row with a fresh key id and HMAC key.
- rotate: a new key id and HMAC key replace the old ones; the old pair binds no new account
  (its key id is unknown from then on). Accounts already bound stay bound: an account
  belongs to its tenant by name, not by the key that registered it, so rotating never
  interrupts a running client. To cut accounts off, delete the tenant.
- delete: the row goes; refused while valid accounts are bound unless forced, which
  deactivates them in the same transaction. Every account of the tenant is refused from
  its next request on: deactivated, and ``standing`` finds no tenant row for one that
  slipped in meanwhile. A tenant created again under the name gets none of them back.

What a tenant may do is its policy in the configuration (``tenants:``), apart from all
this: ``standing`` says which of the two an account lacks, so a client is told the truth.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from certdepot.acme.jws import b64encode
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import store as tables
from certdepot.repository.config import Config, Tenant
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.state import Repo
from certdepot.repository.store import Store


@dataclass(frozen=True)
class EabCredentials:
    tenant: str
    kid: str
    hmac_key: str  # base64url, as ACME clients expect it

    def as_json(self) -> dict[str, str]:
        return {"tenant": self.tenant, "eabKeyId": self.kid, "eabHmacKey": self.hmac_key}


class TenantExists(Exception):
    pass


class BadTenantName(ValueError):
    pass


#: Longest tenant name (the store's column).
MAX_NAME = 200


def check_name(name: str) -> None:
    """A tenant name is what the configuration and URLs (``/admin/v1/tenants/NAME``) can
    carry: 1-200 printable characters, no space, no ``/``, not ``.`` or ``..`` (URL dot
    segments: clients remove them, so such a tenant could never be rotated or deleted by
    URL, and ``%2E%2E`` would reach it while ``..`` does not)."""
    if not 0 < len(name) <= MAX_NAME or not name.isprintable() or any(
            c.isspace() or c == "/" for c in name) or name in (".", ".."):
        raise BadTenantName(f"a tenant name is 1-{MAX_NAME} printable characters without "
                            "spaces or '/', other than '.' and '..'")


class NoSuchTenant(Exception):
    pass


class TenantHasAccounts(Exception):
    """Delete refused: valid accounts are bound (``args[1]``: how many)."""


def _known_name(name: str) -> None:
    """NoSuchTenant for a name no tenant can have (before it reaches the store: PostgreSQL
    refuses a NUL in any string)."""
    try:
        check_name(name)
    except BadTenantName:
        raise NoSuchTenant(name) from None


def _label(kid: str) -> str:
    return f"eab:{kid}"


def _new_key() -> tuple[str, bytes]:
    kid = "kid-" + secrets.token_urlsafe(12)
    key = secrets.token_bytes(32)
    # A base64url key starting with '-' reads as an option to CLI clients (certbot
    # --eab-hmac-key -x...): draw again rather than make every admin quote it.
    while b64encode(key).startswith("-"):
        key = secrets.token_bytes(32)
    return kid, key


def create_tenant(store: Store, vault: KeyVault, name: str) -> EabCredentials:
    check_name(name)
    if store.get(tables.tenants, name) is not None:
        raise TenantExists(name)
    kid, key = _new_key()
    try:
        store.insert(tables.tenants, name=name, eab_kid=kid,
                     eab_key=vault.seal(key, _label(kid)), created=time.time(), rotated=None)
    except sa.exc.IntegrityError:  # created at the same moment elsewhere
        raise TenantExists(name) from None
    return EabCredentials(name, kid, b64encode(key))


def rotate_tenant(store: Store, vault: KeyVault, name: str) -> EabCredentials:
    """Replace tenant ``name``'s EAB key id and HMAC key (the old ones stop binding)."""
    _known_name(name)
    kid, key = _new_key()
    if not store.update(tables.tenants, name, eab_kid=kid,
                        eab_key=vault.seal(key, _label(kid)), rotated=time.time()):
        raise NoSuchTenant(name)
    return EabCredentials(name, kid, b64encode(key))


def delete_tenant(store: Store, name: str, *, force: bool = False) -> int:
    """Delete tenant ``name``; returns how many accounts were deactivated. Without
    ``force``, raises TenantHasAccounts while valid accounts are bound."""
    _known_name(name)
    accts = tables.accounts
    with store.unit():  # one transaction: no account slips in between count and delete
        if store.get(tables.tenants, name) is None:
            raise NoSuchTenant(name)
        bound = store.count(accts, accts.c.tenant == name, accts.c.status == "valid")
        if bound and not force:
            raise TenantHasAccounts(name, bound)
        with store.tx() as conn:
            conn.execute(accts.update().where(accts.c.tenant == name,
                                              accts.c.status == "valid")
                         .values(status="deactivated"))
            conn.execute(tables.orders.update().where(
                tables.orders.c.account_id.in_(sa.select(accts.c.id).where(
                    accts.c.tenant == name)),
                tables.orders.c.status.in_(["pending", "ready"])).values(status="invalid"))
            conn.execute(tables.tenants.delete().where(tables.tenants.c.name == name))
    return bound


def list_tenants(config: Config, store: Store) -> list[dict[str, Any]]:
    """Every tenant with credentials in the store, and every tenant the configuration has a
    policy for but no credentials yet (``eabKeyId`` null): what ``tenant list`` shows."""
    accts = tables.accounts
    counts: dict[tuple[str, str], int] = {}
    with store.tx() as conn:
        for tenant, status, n in conn.execute(
                sa.select(accts.c.tenant, accts.c.status, sa.func.count())
                .where(accts.c.tenant.is_not(None)).group_by(accts.c.tenant, accts.c.status)):
            counts[(tenant, status)] = int(n)
    rows = {r["name"]: r for r in store.select(tables.tenants)}
    out = []
    for name in sorted(set(rows) | {t.name for t in config.tenants}):
        row = rows.get(name)
        out.append({
            "name": name,
            "policy": config.tenant(name) is not None,
            "eabKeyId": row["eab_kid"] if row else None,
            "created": row["created"] if row else None,
            "keyRotated": row["rotated"] if row else None,
            "accounts": counts.get((name, "valid"), 0),
            "accountsDeactivated": sum(n for (t, s), n in counts.items()
                                       if t == name and s != "valid"),
        })
    return out


def hmac_key_for(store: Store, vault: KeyVault, kid: str) -> tuple[str, bytes] | None:
    """(tenant name, raw HMAC key) for an EAB key id."""
    rows = store.select(tables.tenants, tables.tenants.c.eab_kid == kid)
    if not rows:
        return None
    return rows[0]["name"], vault.open(bytes(rows[0]["eab_key"]), _label(kid))


# Why an account has no policy to act under (also metric label values: a fixed set).
NOT_BOUND = "account-not-bound"
NO_POLICY = "tenant-no-policy"
DELETED = "tenant-deleted"


def _deleted(store: Store, account: Mapping[str, Any]) -> bool:
    """The account's tenant row is gone. (Not compared by creation time with a tenant
    created again under the name: the CLI may run on a host whose clock differs from the
    server's, and a fast clock would cut off every new account. A deleted tenant's accounts
    are deactivated instead, in the transaction that deletes it.)"""
    held = account.get(tables.TENANT_HELD)
    if held is not None:  # read with the account, in this request's transaction
        return not held
    return store.get(tables.tenants, account["tenant"]) is None


def standing(repo: Repo, account: Mapping[str, Any]) -> tuple[Tenant | None, str | None]:
    """The policy ``account`` acts under, or None and why (NOT_BOUND, DELETED, NO_POLICY)."""
    name = account.get("tenant")
    if not name:
        return None, NOT_BOUND
    if _deleted(repo.store, account):
        return None, DELETED
    tenant = repo.tenant(name)
    return (tenant, None) if tenant is not None else (None, NO_POLICY)


def refusal_detail(reason: str, tenant: str | None) -> str:
    """What a client is told when its account has no policy to act under."""
    if reason == NOT_BOUND:
        return ("this account is not bound to a tenant (it was registered without External "
                "Account Binding)")
    if reason == DELETED:
        return f"this account's tenant {tenant!r} was deleted"
    return (f"this account's tenant {tenant!r} has no policy in the repository's "
            "configuration; ask the repository's administrator to add one")


def require_policy(repo: Repo, account: Mapping[str, Any]) -> Tenant:
    """The policy ``account`` acts under, or ``unauthorized`` saying why there is none."""
    tenant, why = standing(repo, account)
    if tenant is None:
        raise AcmeProblem("unauthorized", refusal_detail(why or NOT_BOUND,
                                                         account.get("tenant")))
    return tenant


def inactive_detail(store: Store, account: Mapping[str, Any]) -> str:
    """Why a request of a deactivated (or revoked) account is refused."""
    if account.get("tenant") and account["status"] == "deactivated" and _deleted(store,
                                                                                  account):
        return f"account is deactivated: its tenant {account['tenant']!r} was deleted"
    return f"account is {account['status']}"
