"""``python -m bench.sqlcount OUT -- ARGV...``: run ``certdepot ARGV`` counting SQL statements.

A benchmark wrapper, never used in production: every statement the process sends through
SQLAlchemy (any engine) is counted by its first word (SELECT, INSERT, UPDATE, DELETE, ...)
plus ``COMMIT`` for each committed transaction; SIGUSR1 writes the counts to OUT-<pid>.json,
so a load generator can read them before and after a window (``bench.repocost``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
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

    mine = out.with_name(f"{out.stem}-{os.getpid()}.json")

    def dump(_sig: int, _frame: FrameType | None) -> None:
        tmp = mine.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(COUNTS)))
        tmp.replace(mine)

    signal.signal(signal.SIGUSR1, dump)
    from certdepot.cli import main as certdepot_main

    try:
        from certdepot.repository import workers as pool
    except ImportError:  # an older checkout (--base) without workers
        pool = None
    if pool is not None:
        # Workers (serve --workers N) are counted too: started under this wrapper.
        start = pool._start

        def counted(argv: Sequence[str], workers: int) -> list[subprocess.Popen[bytes]]:
            rest = list(argv)[list(argv).index("certdepot.cli") + 1:]
            return start([sys.executable, "-m", "bench.sqlcount", str(out), "--", *rest],
                         workers)

        pool._start = counted

    certdepot_main(argv, prog_name="certdepot")  # click: exits with the command's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
