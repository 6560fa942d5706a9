"""Durable state on SQLAlchemy 2 Core: SQLite by default, PostgreSQL for several replicas.

Everything replicas must agree on lives here: nonces (so a nonce issued by one replica is
accepted once by any), accounts, orders, certificates, key deliveries, http-01 tokens, and
the leases that let exactly one replica renew. Private keys are stored only as KeyVault
blobs. Times are float epoch seconds: portable across both back ends, no tz surprises.

The tables and their migrations are in ``schema``; this module holds the ``Store`` (engine,
transactions and units, the generic row helpers, nonces, leases, blobs).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from certdepot.repository.schema import (
    MIGRATIONS,
    accounts,
    authzs,
    blobs,
    certificates,
    consumers,
    deliveries,
    http01_tokens,
    leases,
    managed,
    metadata,
    nonces,
    orders,
    revocations,
    schema_version,
    tenants,
)
from certdepot.repository.sqlitefiles import secure_sqlite_files

# The tables live in schema.py; importers keep writing ``store as tables`` and
# ``from certdepot.repository.store import MIGRATIONS``.
__all__ = [
    "MIGRATIONS",
    "SQLITE_BUSY_TIMEOUT_S",
    "TENANT_HELD",
    "Store",
    "accounts",
    "authzs",
    "blobs",
    "certificates",
    "consumers",
    "deliveries",
    "http01_tokens",
    "leases",
    "managed",
    "metadata",
    "new_id",
    "nonces",
    "orders",
    "revocations",
    "schema_version",
    "tenants",
]


#: The key ``Store.account`` adds to an account row: its tenant's row exists.
TENANT_HELD = "tenant_held"


def new_id() -> str:
    """Opaque, unguessable identifier for URLs."""
    return secrets.token_urlsafe(18)


# SQLite waits this long for another process's write lock (the CLI next to ``serve``).
SQLITE_BUSY_TIMEOUT_S = 30.0


def _is_memory_sqlite(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:")


def _sqlite_file_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: WAL, so readers don't block the writer and a commit appends to
    the log instead of rewriting pages; synchronous=NORMAL, so a commit does not wait for
    an fsync (in WAL mode a power loss can drop the last commits but never corrupts the
    file). With the default journal every store call waited for several fsyncs: the
    benchmark measured 4.8 download sessions/s at 16 clients. (The busy timeout is the
    driver's ``timeout`` connect argument.)"""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


_USE_NONCE = nonces.delete().where(nonces.c.value == sa.bindparam("p_value"),
                                   nonces.c.expires >= sa.bindparam("p_now"))


def _evict_oldest_nonces(c: Connection, cap: int) -> None:
    """Anyone may ask for nonces (HEAD newNonce, unauthenticated): beyond ``cap`` unused
    ones the oldest are dropped. Their holders get badNonce, whose answer carries a fresh
    nonce to retry with (RFC 8555 §6.5), so a flood costs others one retry, not memory."""
    excess = int(c.execute(sa.select(sa.func.count()).select_from(nonces)).scalar() or 0) - cap
    if excess > 0:
        oldest = sa.select(nonces.c.value).order_by(nonces.c.expires).limit(excess)
        c.execute(nonces.delete().where(nonces.c.value.in_(oldest)))


def _pk(table: sa.Table) -> sa.Column[Any]:
    return next(iter(table.primary_key.columns))


class _Unit:
    """The connection and transaction one request's store calls share (``Store.unit``)."""

    __slots__ = ("after_commit", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.after_commit: list[Callable[[], None]] = []


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        sqlite = url.startswith("sqlite")
        memory = sqlite and _is_memory_sqlite(url)
        if sqlite:
            kwargs["connect_args"] = {"check_same_thread": False,
                                      "timeout": SQLITE_BUSY_TIMEOUT_S}
            # One connection, kept open: in memory it is the database; for a file it is
            # enough because transactions are serialised below, and it spares a connect
            # plus pragmas per request when worker threads outnumber a pool.
            kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
            # Sized to the worker threads (anyio's default limiter: 40) so a burst of
            # requests does not open and close connections per request.
            kwargs["pool_size"] = 20
            kwargs["max_overflow"] = 20
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if sqlite and not memory:
            if self.engine.url.database and not self.engine.url.database.startswith("file:"):
                secure_sqlite_files(self.engine.url.database)
            sa.event.listen(self.engine, "connect", _sqlite_file_pragmas)
        # SQLite has one writer. Threads taking turns on one lock is cheaper than threads
        # spinning in SQLite's busy handler, and it rules out the immediate SQLITE_BUSY a
        # read transaction gets when it tries to write after another thread committed.
        # (An in-memory database is one shared connection, which needs it anyway.)
        self._lock: threading.RLock | None = threading.RLock() if sqlite else None
        #: Whether requests should do their store work on the event loop itself instead of
        #: in worker threads. SQLite: a local file behind the lock above, so threads give
        #: no parallelism, only hops, lock hand-offs and GIL contention (measured: 7.6 ->
        #: 6.3 ms of server CPU per download session). The cost: the loop waits while
        #: another process (the CLI) holds SQLite's write lock, which is milliseconds.
        #: PostgreSQL is a network round trip per statement: threads.
        self.runs_inline = sqlite
        # (lifetime, minted at, unissued values): see new_nonce.
        self._nonce_lock = threading.Lock()
        self._nonce_pool: tuple[float, float, list[str]] = (0.0, 0.0, [])
        self._local = threading.local()  # .unit: the thread's open unit, if any
        self._stmts: dict[tuple[Any, ...], Any] = {}  # see _stmt

    def migrate(self) -> int:
        """Bring the schema to the newest version; safe to run from several replicas."""
        with self.tx() as conn:
            if self.engine.dialect.name == "postgresql":
                # Serialise concurrent replicas starting at once.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(814203)"))
            insp = sa.inspect(conn)
            current = 0
            if insp.has_table("schema_version"):
                current = conn.execute(sa.select(sa.func.max(schema_version.c.version))
                                       ).scalar() or 0
            for version in range(current + 1, len(MIGRATIONS) + 1):
                MIGRATIONS[version - 1](conn)
                conn.execute(schema_version.delete())
                conn.execute(schema_version.insert().values(version=version))
            return len(MIGRATIONS)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        unit: _Unit | None = getattr(self._local, "unit", None)
        if unit is not None:
            yield unit.conn  # part of the request's transaction (see ``unit``)
            return
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _attempt(self) -> Iterator[Connection]:
        """``tx`` for a statement whose failure the caller handles (IntegrityError: someone
        else was first): inside a unit it is a savepoint, so the failure does not abort
        the unit's transaction (PostgreSQL would refuse every later statement)."""
        unit: _Unit | None = getattr(self._local, "unit", None)
        if unit is None:
            with self.tx() as conn:
                yield conn
            return
        with unit.conn.begin_nested():
            yield unit.conn

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what this thread wrote so far is committed (now, outside a unit)."""
        unit: _Unit | None = getattr(self._local, "unit", None)
        if unit is None:
            fn()
        else:
            unit.after_commit.append(fn)

    @contextmanager
    def unit(self) -> Iterator[None]:
        """Everything this thread does through the store inside the block is one
        transaction (one ACME request: its nonce, its reads and writes). A request made of
        four or five separate transactions spent much of its time in BEGIN/COMMIT and in
        taking turns on the SQLite lock. Committed when the block ends, also when it raises
        (an ``AcmeProblem`` after the nonce was consumed must still consume it, as when
        every statement committed on its own); rolled back only on a database error, after
        which the transaction cannot be trusted. ``end_unit`` commits early."""
        if getattr(self._local, "unit", None) is not None:
            yield  # nested: the outer block owns the transaction
            return
        if self._lock is not None:
            self._lock.acquire()
        try:
            conn = self.engine.connect()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self._local.unit = _Unit(conn)
        conn.begin()
        try:
            yield
        except sa.exc.SQLAlchemyError:
            self._finish(commit=False)
            raise
        except BaseException:
            self._finish(commit=True)
            raise
        self._finish(commit=True)

    def end_unit(self) -> None:
        """Commit the current unit now and give up the store: what follows in this thread
        runs in transactions of its own. Before waiting for work on another thread that
        needs the store (issuance handed to the event loop)."""
        if getattr(self._local, "unit", None) is not None:
            self._finish(commit=True)

    def _finish(self, *, commit: bool) -> None:
        unit: _Unit | None = getattr(self._local, "unit", None)
        if unit is None:  # ended early by end_unit
            return
        self._local.unit = None
        try:
            if commit:
                unit.conn.commit()
            else:
                unit.conn.rollback()
        finally:
            unit.conn.close()
            if self._lock is not None:
                self._lock.release()
        if commit:
            for fn in unit.after_commit:
                fn()

    def close(self) -> None:
        self.engine.dispose()

    # ---- generic row helpers -------------------------------------------------------
    # The statements are built once, with bound parameters, and executed with the values:
    # building a fresh statement per call (and SQLAlchemy computing its cache key) was a
    # large share of a request's store time. Parameter names start with "p_" so they never
    # collide with column names (which name the SET values of an UPDATE).
    def _stmt(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        stmt = self._stmts.get(key)
        if stmt is None:
            stmt = self._stmts[key] = build()
        return stmt

    def insert(self, table: sa.Table, **values: Any) -> None:
        stmt = self._stmt(("insert", table.name), table.insert)
        with self.tx() as c:
            c.execute(stmt, values)

    def insert_many(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` (each with the same columns) in one statement."""
        if rows:
            stmt = self._stmt(("insert", table.name), table.insert)
            with self.tx() as c:
                c.execute(stmt, rows)

    def get(self, table: sa.Table, key: Any) -> dict[str, Any] | None:
        stmt = self._stmt(("get", table.name), lambda: sa.select(table).where(
            _pk(table) == sa.bindparam("p_key")))
        with self.tx() as c:
            row = c.execute(stmt, {"p_key": key}).mappings().first()
        return dict(row) if row else None

    def update(self, table: sa.Table, key: Any, *, where: Mapping[str, Any] | None = None,
               **values: Any) -> bool:
        """Update one row; with ``where`` only if those columns still hold those values
        (compare-and-set, how replicas claim work). True if a row changed."""
        conds = tuple(where or ())

        def build() -> Any:
            return table.update().where(_pk(table) == sa.bindparam("p_key"), *(
                table.c[col] == sa.bindparam(f"p_w_{col}") for col in conds))

        stmt = self._stmt(("update", table.name, conds), build)
        params = {"p_key": key, **{f"p_w_{col}": val for col, val in (where or {}).items()},
                  **values}
        with self.tx() as c:
            return (c.execute(stmt, params).rowcount or 0) > 0

    def find(self, table: sa.Table, **equals: Any) -> list[dict[str, Any]]:
        """The rows whose columns hold these values (``select`` with equality only, on a
        statement built once per table and set of columns)."""
        cols = tuple(equals)
        stmt = self._stmt(("find", table.name, cols), lambda: sa.select(table).where(
            *(table.c[col] == sa.bindparam(f"p_w_{col}") for col in cols)))
        with self.tx() as c:
            return [dict(r) for r in c.execute(
                stmt, {f"p_w_{col}": val for col, val in equals.items()}).mappings()]

    def select(self, table: sa.Table, *conds: Any,
               order_by: Any = None) -> list[dict[str, Any]]:
        stmt = sa.select(table).where(*conds)
        if order_by is not None:
            stmt = stmt.order_by(order_by)
        with self.tx() as c:
            return [dict(r) for r in c.execute(stmt).mappings()]

    def account(self, account_id: str) -> dict[str, Any] | None:
        """The account row plus ``TENANT_HELD``: whether its tenant's row exists (what
        ``tenants.standing`` asks at every step), read in the statement that finds the
        account for a signed request instead of one more per step."""
        def build() -> Any:
            return (sa.select(accounts, (tenants.c.name.is_not(None)).label(TENANT_HELD))
                    .select_from(accounts.outerjoin(tenants,
                                                    tenants.c.name == accounts.c.tenant))
                    .where(accounts.c.id == sa.bindparam("p_key")))

        stmt = self._stmt(("account",), build)
        with self.tx() as c:
            row = c.execute(stmt, {"p_key": account_id}).mappings().first()
        return dict(row) if row else None

    def scalar(self, key: str, build: Callable[[], Any], **params: Any) -> Any:
        """Run the statement ``build`` makes (built once per ``key``, with bound
        parameters named ``p_...``) and return its first column of its first row."""
        stmt = self._stmt(("scalar", key), build)
        with self.tx() as c:
            return c.execute(stmt, params).scalar()

    def run(self, key: str, build: Callable[[], Any], **params: Any) -> int:
        """Execute the statement ``build`` makes (see ``scalar``); the rows it changed."""
        stmt = self._stmt(("run", key), build)
        with self.tx() as c:
            return int(c.execute(stmt, params).rowcount or 0)

    def first(self, key: str, build: Callable[[], Any], **params: Any
              ) -> dict[str, Any] | None:
        """The first row of the statement ``build`` makes (see ``scalar``), or None."""
        stmt = self._stmt(("first", key), build)
        with self.tx() as c:
            row = c.execute(stmt, params).mappings().first()
        return dict(row) if row else None

    def count(self, table: sa.Table, *conds: Any) -> int:
        with self.tx() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(table).where(*conds)
                                 ).scalar() or 0)

    # ---- nonces --------------------------------------------------------------------
    # Every ACME response carries a fresh nonce and every POST consumes one: one row per
    # response was a second commit per request. Instead nonces are minted in batches (one
    # insert; rows in the shared table, so any replica accepts each once) and handed out
    # from memory, and a POST tops the batch up in the transaction that consumes its
    # nonce: a request costs one transaction. A batch is handed out only while young, so a
    # client's nonce stays valid for at least ``lifetime - NONCE_MAX_AGE`` seconds.
    NONCE_BATCH = 16
    NONCE_MAX_AGE = 5.0
    #: Bound on unused nonces (``limits.maxOutstandingNonces``); 0: none.
    max_nonces = 0

    def _mint_nonces(self, c: Connection, lifetime: float, now: float) -> list[str]:
        batch = [secrets.token_urlsafe(24) for _ in range(self.NONCE_BATCH)]
        c.execute(nonces.insert(), [{"value": v, "expires": now + lifetime} for v in batch])
        if secrets.randbelow(50) == 0:  # cheap amortised cleanup
            c.execute(nonces.delete().where(nonces.c.expires < now))
        if self.max_nonces:
            _evict_oldest_nonces(c, self.max_nonces)
        return batch

    def _pool_is_fresh(self, lifetime: float, now: float, *, margin: float = 0.0) -> bool:
        pooled_lifetime, minted, batch = self._nonce_pool
        return (len(batch) > margin and pooled_lifetime == lifetime
                and now - minted <= self.NONCE_MAX_AGE - margin)

    def new_nonce(self, lifetime: float) -> str:
        now = time.time()
        if lifetime < 4 * self.NONCE_MAX_AGE:  # too short to pre-issue: one row now
            value = secrets.token_urlsafe(24)
            with self.tx() as c:
                c.execute(nonces.insert().values(value=value, expires=now + lifetime))
            return value
        with self._nonce_lock:
            if self._pool_is_fresh(lifetime, now):
                return self._nonce_pool[2].pop()
        with self.tx() as c:
            batch = self._mint_nonces(c, lifetime, now)
        value = batch.pop()
        # Handed out only once committed: a rolled-back batch is no nonce.
        self.after_commit(lambda: self._publish_nonces(lifetime, now, batch))
        return value

    def _publish_nonces(self, lifetime: float, minted: float, batch: list[str]) -> None:
        with self._nonce_lock:
            self._nonce_pool = (lifetime, minted, batch)

    def use_nonce(self, value: str) -> bool:
        """Consume a nonce: True exactly once, and only before it expires. The same
        transaction tops up the batch ``new_nonce`` hands out (with the lifetime it was
        last asked for), so the response's fresh nonce costs no transaction of its own."""
        now = time.time()
        lifetime = self._nonce_pool[0]
        batch: list[str] | None = None
        with self.tx() as c:
            n = c.execute(_USE_NONCE, {"p_value": value, "p_now": now}).rowcount or 0
            with self._nonce_lock:
                refill = n == 1 and lifetime > 0 and not self._pool_is_fresh(
                    lifetime, now, margin=2.0)
            if refill:
                batch = self._mint_nonces(c, lifetime, now)
        if batch is not None:  # only once committed: a rolled-back batch is no nonce
            fresh = batch
            self.after_commit(lambda: self._publish_nonces(lifetime, now, fresh))
        return n == 1

    # ---- leases --------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Hold ``name`` for ``ttl`` seconds; True if we (now) hold it."""
        now = time.time()
        with self.tx() as c:
            n = c.execute(leases.update()
                          .where(leases.c.name == name,
                                 sa.or_(leases.c.holder == holder, leases.c.expires < now))
                          .values(holder=holder, expires=now + ttl)).rowcount or 0
            if n:
                return True
        try:
            with self._attempt() as c:
                c.execute(leases.insert().values(name=name, holder=holder, expires=now + ttl))
            return True
        except sa.exc.IntegrityError:
            return False

    def release_lease(self, name: str, holder: str) -> None:
        with self.tx() as c:
            c.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

    # ---- blobs ---------------------------------------------------------------------
    def put_blob(self, name: str, value: bytes, *, replace: bool = True) -> bool:
        """Store a named value; with replace=False only if absent (first writer wins)."""
        try:
            with self._attempt() as c:
                c.execute(blobs.insert().values(name=name, value=value))
            return True
        except sa.exc.IntegrityError:
            if not replace:
                return False
        with self.tx() as c:
            c.execute(blobs.update().where(blobs.c.name == name).values(value=value))
        return True

    def get_blob(self, name: str) -> bytes | None:
        row = self.get(blobs, name)
        return bytes(row["value"]) if row else None

    def delete_blob(self, name: str) -> None:
        with self.tx() as c:
            c.execute(blobs.delete().where(blobs.c.name == name))
