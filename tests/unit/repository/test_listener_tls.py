"""The HTTPS listener's self-signed certificate is kept in the store (issue 20, item 6):
reused while it fits, replaced near its end or when the listener's names change, its key
sealed at rest."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from repository_testkit import make_config

from certdepot.acme import crypto
from certdepot.repository import listener_tls
from certdepot.repository.config import ConfigError
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.processconfig import HttpsListener
from certdepot.repository.store import Store

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    store.migrate()
    return store


def _serial(pair: tuple[bytes, bytes]) -> int:
    return x509.load_pem_x509_certificate(pair[0]).serial_number


def test_reused_then_renewed_near_expiry(tmp_path: Path) -> None:
    store, vault = _store(tmp_path), KeyVault(os.urandom(32))
    ls = HttpsListener(self_signed=True, self_signed_validity="10d",
                       self_signed_renew_before="2d")
    first = listener_tls.certificate(store, vault, ls, ["127.0.0.1"], now=NOW)
    cert = x509.load_pem_x509_certificate(first[0])
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=10)
    assert crypto.public_key_matches(crypto.load_private_key(first[1]), cert)
    again = listener_tls.certificate(store, vault, ls, ["127.0.0.1"],
                                     now=NOW + dt.timedelta(days=7, hours=23))
    assert again == first
    later = listener_tls.certificate(store, vault, ls, ["127.0.0.1"],
                                     now=NOW + dt.timedelta(days=8, hours=1))
    assert _serial(later) != _serial(first)
    assert listener_tls.certificate(store, vault, ls, ["127.0.0.1"],
                                    now=NOW + dt.timedelta(days=8, hours=2)) == later
    # Sealed at rest: neither the key nor its PEM armour is in the database file.
    raw = (tmp_path / "repo.db").read_bytes() + (tmp_path / "repo.db-wal").read_bytes()
    assert b"PRIVATE KEY" not in raw
    assert base64.b64encode(later[1][40:80]) not in raw
    store.close()


def test_new_names_new_certificate(tmp_path: Path) -> None:
    store, vault = _store(tmp_path), KeyVault(os.urandom(32))
    ls = HttpsListener(self_signed=True)
    first = listener_tls.certificate(store, vault, ls, ["127.0.0.1", "127.0.0.1"], now=NOW)
    names = listener_tls.wanted_names(["127.0.0.1"])
    assert len(names) == 2  # localhost and the address, once
    second = listener_tls.certificate(store, vault, ls, ["127.0.0.1", "repo.example.test"],
                                      now=NOW)
    assert _serial(second) != _serial(first)
    san = x509.load_pem_x509_certificate(second[0]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "repo.example.test" in san.get_values_for_type(x509.DNSName)
    store.close()


def test_another_kek_makes_a_new_one(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ls = HttpsListener(self_signed=True)
    first = listener_tls.certificate(store, KeyVault(os.urandom(32)), ls, ["::1"], now=NOW)
    second = listener_tls.certificate(store, KeyVault(os.urandom(32)), ls, ["::1"], now=NOW)
    assert _serial(second) != _serial(first)
    store.close()


def test_renew_before_must_be_shorter_than_validity() -> None:
    with pytest.raises(ConfigError, match="selfSignedRenewBefore"):
        make_config(listeners={"https": {"selfSigned": True, "selfSignedValidity": "10d",
                                         "selfSignedRenewBefore": "10d"}})
