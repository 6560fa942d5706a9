"""``certdepot repository serve`` with SQLite in WAL mode and ``synchronous=NORMAL``.

Not a product path: the benchmark runs it next to the stock command to measure the fix
it proposes for the repository's store (each store call commits, and with SQLite's
default rollback journal every commit waits for several fsyncs). The pragmas are set on
every new SQLite connection through an SQLAlchemy ``connect`` event; nothing else differs.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


if __name__ == "__main__":
    from certdepot.cli import main

    main()
