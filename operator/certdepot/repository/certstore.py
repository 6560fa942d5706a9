"""Certificates the repository keeps: saving issued chains, finding the current one."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from certdepot.acme import ari, crypto
from certdepot.repository import store as tables
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store, new_id


def key_label(cert_id: str) -> str:
    return f"cert-key:{cert_id}"


def ari_id_of(cert: x509.Certificate) -> str:
    try:
        return ari.cert_id(cert)
    except ValueError:
        return ""  # no AKI: ARI cannot name this certificate


def save_certificate(store: Store, vault: KeyVault, chain_pem: str, *, issuer: str,
                     now: float, managed_name: str | None = None,
                     key: crypto.PrivateKey | None = None, order_id: str | None = None,
                     account_id: str | None = None, cert_id: str | None = None) -> str:
    """Store an issued certificate (its key sealed, if given) as a new row; its id
    (``cert_id``: chosen by the caller, who links it first)."""
    leaf = crypto.parse_pem_chain(chain_pem)[0]
    cert_id = cert_id or new_id()
    sealed = (vault.seal(crypto.private_key_to_pkcs8_der(key), key_label(cert_id))
              if key is not None else None)
    store.insert(tables.certificates, id=cert_id, managed_name=managed_name,
                 order_id=order_id, issuer=issuer, serial=crypto.serial_hex(leaf),
                 ari_id=ari_id_of(leaf), not_before=leaf.not_valid_before_utc.timestamp(),
                 not_after=leaf.not_valid_after_utc.timestamp(), chain_pem=chain_pem,
                 key=sealed, account_id=account_id, revoked=False, created=now)
    return cert_id


def open_key(vault: KeyVault, row: dict[str, Any]) -> crypto.PrivateKey:
    return crypto.load_private_key(vault.open(bytes(row["key"]), key_label(row["id"])))


class KeyCache:
    """Managed certificates' private keys as PKCS#8 DER, kept between downloads.

    Opening the sealed key, loading it and encoding it again cost every key fetch ~3% of
    the repository's CPU in a download session, for the same few keys. A certificate row
    never changes its key (renewal and rotation save a new row, with a new id), so an
    entry keyed by (certificate id, serial) is never stale and needs no invalidation; the
    policy checks run before the cache is asked, on every fetch. Bounded (least recently
    used first out) by ``limits.keyCacheEntries``, read at each call so that a reloaded
    configuration applies; 0 keeps nothing. The values are key material: never logged,
    never in an exception."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()  # worker threads fetch keys concurrently (PostgreSQL)

    def pkcs8(self, vault: KeyVault, row: dict[str, Any], capacity: int) -> bytes:
        """The key of certificate ``row`` as PKCS#8 DER."""
        ident = (str(row["id"]), str(row["serial"]))
        with self._lock:
            der = self._entries.get(ident)
            if der is not None:
                self._entries.move_to_end(ident)
                return der
        # Loaded and encoded again, not the vault's plaintext as is: what leaves is always
        # a checked, supported key in canonical PKCS#8 form.
        der = crypto.private_key_to_pkcs8_der(open_key(vault, row))
        with self._lock:
            if capacity > 0:
                self._entries[ident] = der
                while len(self._entries) > capacity:
                    self._entries.popitem(last=False)
            else:
                self._entries.clear()
        return der

    def __len__(self) -> int:
        return len(self._entries)


def current_managed(store: Store, name: str) -> dict[str, Any] | None:
    """The certificate currently served for managed entry ``name`` (one statement: it is
    read at every download finalize)."""
    def build() -> Any:
        c, m = tables.certificates, tables.managed
        return (sa.select(c).select_from(m.join(c, c.c.id == m.c.current_cert_id))
                .where(m.c.name == sa.bindparam("p_name")))

    return store.first("current-managed", build, p_name=name)


def set_current(store: Store, name: str, cert_id: str) -> None:
    if not store.update(tables.managed, name, current_cert_id=cert_id, failures=0,
                        last_error=None, renew_requested=False, next_attempt=0.0):
        ensure_managed(store, name)
        store.update(tables.managed, name, current_cert_id=cert_id)


def ensure_managed(store: Store, name: str) -> None:
    if store.get(tables.managed, name) is None:
        # IntegrityError: another replica created it first, which is as good.
        with contextlib.suppress(sa.exc.IntegrityError):
            store.insert(tables.managed, name=name, current_cert_id=None, failures=0,
                         next_attempt=0.0, last_error=None, renew_requested=False)
