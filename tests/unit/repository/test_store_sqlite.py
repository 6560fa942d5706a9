"""The SQLite file store: WAL journal, one connection shared by worker threads, and no key
material in the database file or its write-ahead log."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import sqlalchemy as sa

from certdepot.acme import crypto
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store, certificates, new_id


def _pragma(store: Store, name: str) -> str:
    with store.tx() as c:
        return str(c.execute(sa.text(f"PRAGMA {name}")).scalar())


def test_file_store_uses_wal_and_normal_sync(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    s.migrate()
    assert _pragma(s, "journal_mode").lower() == "wal"
    assert _pragma(s, "synchronous") == "1"  # NORMAL
    s.close()


def test_memory_store_keeps_its_journal() -> None:
    s = Store("sqlite://")
    s.migrate()
    assert _pragma(s, "journal_mode").lower() == "memory"


def test_threads_share_the_file_store_without_busy_errors(tmp_path: Path) -> None:
    """Many worker threads on the one shared connection, with read-then-write transactions
    as requests have: no 'database is locked', no interleaving, every nonce used once."""
    s = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    s.migrate()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                n = s.new_nonce(60)
                with s.tx() as c:  # read, then write in the same transaction
                    c.execute(sa.text("SELECT count(*) FROM nonces")).scalar()
                    c.execute(sa.text("UPDATE nonces SET expires = expires + 1"))
                assert s.use_nonce(n)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    s.close()


def test_no_key_material_in_database_or_wal(tmp_path: Path) -> None:
    db = tmp_path / "repo.db"
    s = Store(f"sqlite:///{db}")
    s.migrate()
    key = crypto.generate_private_key("ec-p256")
    der = crypto.private_key_to_pkcs8_der(key)
    pem = crypto.private_key_to_pem(key)
    vault = KeyVault(os.urandom(32))
    cid = new_id()
    s.insert(certificates, id=cid, issuer="local", serial="1", ari_id="a",
             not_before=0.0, not_after=1.0, chain_pem="", created=0.0,
             key=vault.seal(pem, f"cert-key:{cid}"))
    wal = tmp_path / "repo.db-wal"
    # Read while the store is open: the rows live in the write-ahead log until a checkpoint.
    raw = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert wal.exists() and wal.stat().st_size > 0
    assert b"PRIVATE KEY" not in raw
    assert pem not in raw and der not in raw
    s.close()
