"""``Store.unit``: one transaction for everything a request does through the store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from certdepot.acme.problems import AcmeProblem
from certdepot.repository.store import Store, blobs, leases, nonces

LIFETIME = 60.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    s.migrate()
    return s


def _commits(store: Store) -> list[int]:
    seen: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: seen.append(1))
    return seen


def _nonce_rows(store: Store) -> int:
    with store.tx() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(nonces)).scalar() or 0)


def test_a_request_is_one_commit(store: Store) -> None:
    first = store.new_nonce(LIFETIME)
    commits = _commits(store)
    with store.unit():
        assert store.use_nonce(first)
        store.put_blob("a", b"1")
        assert store.get_blob("a") == b"1"  # reads see the unit's own writes
        store.new_nonce(LIFETIME)
        assert commits == []
    assert commits == [1]


def test_a_problem_after_the_nonce_still_consumes_it(store: Store) -> None:
    nonce = store.new_nonce(LIFETIME)
    with pytest.raises(AcmeProblem), store.unit():
        assert store.use_nonce(nonce)
        store.put_blob("written-before-the-problem", b"x")
        raise AcmeProblem("malformed", "the handler refused the request")
    assert not store.use_nonce(nonce)  # committed: single use holds
    assert store.get_blob("written-before-the-problem") == b"x"


def test_a_database_error_rolls_back_and_publishes_no_nonces(store: Store) -> None:
    store.new_nonce(LIFETIME)
    store._nonce_pool = (0.0, 0.0, [])  # stale: the next new_nonce mints a batch
    rows = _nonce_rows(store)
    with pytest.raises(sa.exc.OperationalError), store.unit():
        minted = store.new_nonce(LIFETIME)
        store.put_blob("rolled-back", b"x")
        with store.tx() as c:
            c.execute(sa.text("SELECT * FROM no_such_table"))
    assert store.get_blob("rolled-back") is None
    assert _nonce_rows(store) == rows
    assert not store.use_nonce(minted)
    assert store._nonce_pool[2] == []  # the rolled-back batch is never handed out


def test_end_unit_frees_the_store_for_another_thread(store: Store) -> None:
    """What start_and_wait does: commit, then wait for work that needs the store."""
    with store.unit():
        store.put_blob("before", b"1")
        store.end_unit()
        worker = threading.Thread(target=store.put_blob, args=("other-thread", b"2"))
        worker.start()
        worker.join(timeout=5)
        assert not worker.is_alive(), "the unit still held the store"
        store.put_blob("after", b"3")  # its own transaction now
    assert {store.get_blob(n) for n in ("before", "other-thread", "after")} == {
        b"1", b"2", b"3"}


def test_losing_a_race_inside_a_unit_keeps_the_transaction(store: Store) -> None:
    store.put_blob("taken", b"first")
    assert store.acquire_lease("l", "holder-a", 60)
    with store.unit():
        assert not store.put_blob("taken", b"second", replace=False)
        assert not store.acquire_lease("l", "holder-b", 60)
        store.put_blob("still-written", b"ok")
    assert store.get_blob("taken") == b"first"
    assert store.get_blob("still-written") == b"ok"
    with store.tx() as c:
        assert c.execute(sa.select(leases.c.holder)).scalar() == "holder-a"
        assert c.execute(sa.select(sa.func.count()).select_from(blobs)).scalar() == 2


def test_units_in_threads_do_not_interleave(store: Store) -> None:
    store.put_blob("counter", b"0")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with store.unit():
                    n = int(store.get_blob("counter") or b"0")
                    store.put_blob("counter", str(n + 1).encode())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert store.get_blob("counter") == b"160"


def test_find_matches_every_given_column(store: Store) -> None:
    from certdepot.repository.store import orders

    for i, (account, status) in enumerate([("a", "valid"), ("a", "pending"), ("b", "valid")]):
        store.insert(orders, id=f"o{i}", account_id=account, status=status, expires=0.0,
                     data={}, cert_id="c", created=0.0)
    assert [r["id"] for r in store.find(orders, account_id="a", status="valid")] == ["o0"]
    assert sorted(r["id"] for r in store.find(orders, cert_id="c", status="valid")) == [
        "o0", "o2"]
    assert store.find(orders, account_id="b", status="pending") == []
