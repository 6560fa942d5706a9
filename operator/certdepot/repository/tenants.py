"""Tenants: EAB credentials minted by the admin, bound to the accounts that use them.

The HMAC key is needed again to verify each newAccount, so it is kept sealed (KeyVault),
not hashed. It is shown to the admin once, at creation.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from certdepot.acme.jws import b64encode
from certdepot.repository import store as tables
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store


@dataclass(frozen=True)
class EabCredentials:
    tenant: str
    kid: str
    hmac_key: str  # base64url, as ACME clients expect it


class TenantExists(Exception):
    pass


def _label(kid: str) -> str:
    return f"eab:{kid}"


def create_tenant(store: Store, vault: KeyVault, name: str) -> EabCredentials:
    if store.get(tables.tenants, name) is not None:
        raise TenantExists(name)
    kid = "kid-" + secrets.token_urlsafe(12)
    key = secrets.token_bytes(32)
    # A base64url key starting with '-' reads as an option to CLI clients (certbot
    # --eab-hmac-key -x...): draw again rather than make every admin quote it.
    while b64encode(key).startswith("-"):
        key = secrets.token_bytes(32)
    store.insert(tables.tenants, name=name, eab_kid=kid,
                 eab_key=vault.seal(key, _label(kid)), created=time.time())
    return EabCredentials(name, kid, b64encode(key))


def hmac_key_for(store: Store, vault: KeyVault, kid: str) -> tuple[str, bytes] | None:
    """(tenant name, raw HMAC key) for an EAB key id."""
    rows = store.select(tables.tenants, tables.tenants.c.eab_kid == kid)
    if not rows:
        return None
    return rows[0]["name"], vault.open(bytes(rows[0]["eab_key"]), _label(kid))
