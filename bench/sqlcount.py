"""``python -m bench.sqlcount OUT -- ARGV...``: run ``certdepot ARGV`` counting SQL statements.

A benchmark wrapper, never used in production: every statement the process sends through
SQLAlchemy (any engine) is counted by its first word (SELECT, INSERT, UPDATE, DELETE, ...)
plus ``COMMIT`` for each committed transaction; SIGUSR1 writes the counts to OUT as JSON,
so a load generator can read them before and after a window (``bench.repocost``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

COUNTS: Counter[str] = Counter()
#: Also count each statement's text (``SQLCOUNT_DETAIL=1``): which reads a session repeats.
DETAIL = bool(os.environ.get("SQLCOUNT_DETAIL"))


def _statement(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
               executemany: bool) -> None:
    word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    COUNTS[word] += 1
    if DETAIL:
        COUNTS[" ".join(statement.split())[:160]] += 1


def _commit(_conn: Any) -> None:
    COUNTS["COMMIT"] += 1


def main() -> int:
    out = Path(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1:]
    sa.event.listen(Engine, "before_cursor_execute", _statement)
    sa.event.listen(Engine, "commit", _commit)

    def dump(_sig: int, _frame: FrameType | None) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(COUNTS)))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, dump)
    from certdepot.cli import main as certdepot_main

    certdepot_main(argv, prog_name="certdepot")  # click: exits with the command's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
