"""The SQLite file store: WAL journal, one connection shared by worker threads, and no key
material in the database file or its write-ahead log."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
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


def _nonce_rows(store: Store) -> int:
    with store.tx() as c:
        return int(c.execute(sa.text("SELECT count(*) FROM nonces")).scalar() or 0)


def test_pooled_nonces_single_use_shared_and_one_transaction_per_post(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'repo.db'}"
    a, b = Store(url), Store(url)  # two replicas on one database
    a.migrate()
    first = a.new_nonce(600)
    assert _nonce_rows(a) == Store.NONCE_BATCH  # one insert minted a batch
    handed = [first] + [a.new_nonce(600) for _ in range(Store.NONCE_BATCH - 1)]
    assert len(set(handed)) == len(handed)
    # Any replica accepts each once; never-issued and replayed values are refused.
    assert b.use_nonce(handed[0]) and not a.use_nonce(handed[0])
    assert a.use_nonce(handed[1]) and not b.use_nonce(handed[1])
    assert not a.use_nonce("never-issued")
    # A POST's consumption refills the pool in its own transaction: the response's nonce
    # then costs none.
    commits: list[int] = []
    sa.event.listen(a.engine, "commit", lambda _conn: commits.append(1))
    for value in handed[2:]:
        commits.clear()
        assert a.use_nonce(value)
        reply = a.new_nonce(600)
        assert len(commits) == 1, "consume + next nonce must be one transaction"
        assert b.use_nonce(reply)


def test_pooled_nonces_expire_and_short_lifetimes_are_not_pooled(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    s.migrate()
    assert not s.use_nonce(s.new_nonce(-1))
    assert _nonce_rows(s) == 1  # expired, unpooled row; cleaned up later
    n = s.new_nonce(600)
    with s.tx() as c:  # the batch has expired in the meantime
        c.execute(sa.text("UPDATE nonces SET expires = 0"))
    assert not s.use_nonce(n)


def test_old_pooled_nonces_are_not_handed_out(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    s.migrate()
    now = [1000.0]
    monkeypatch.setattr("certdepot.repository.store.time.time", lambda: now[0])
    s.new_nonce(600)
    now[0] += Store.NONCE_MAX_AGE + 1  # the rest of the batch is too old to hand out
    s.new_nonce(600)
    assert _nonce_rows(s) == 2 * Store.NONCE_BATCH  # a second batch was minted


def _modes(tmp_path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()
            if p.name.startswith("mode.db")}


def test_database_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 15 item 10: the database, its WAL and shared-memory files are 0600."""
    old = os.umask(0o022)
    try:
        store = Store(f"sqlite:///{tmp_path / 'mode.db'}")
        store.migrate()
        store.put_blob("probe", b"x" * 5000)  # a write: the WAL and -shm files exist now
        modes = _modes(tmp_path)
        store.close()
    finally:
        os.umask(old)
    assert {"mode.db", "mode.db-wal", "mode.db-shm"} <= set(modes), modes
    assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}


def test_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "mode.db"
    Store(f"sqlite:///{path}").close()
    for p in tmp_path.iterdir():
        p.chmod(0o644)
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    assert all(m == 0o600 for m in _modes(tmp_path).values()), _modes(tmp_path)
