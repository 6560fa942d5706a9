"""The SQLite store's files on disk: created and kept readable by the owner only."""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("certdepot.repository.store")

#: The database holds sealed keys, EAB secrets and every tenant's orders: owner only.
SQLITE_FILE_MODE = 0o600


def secure_sqlite_files(path: str) -> None:
    """Create the SQLite file (if absent) as ``SQLITE_FILE_MODE`` before SQLite opens it,
    and tighten an existing one and its -wal/-shm/-journal companions. SQLite creates its
    companion files with the main file's permissions, so the main file's mode is what
    counts; the umask cannot widen it (os.open's mode is masked, never extended)."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, SQLITE_FILE_MODE))
    for p in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            if stat.S_IMODE(os.stat(p).st_mode) & ~SQLITE_FILE_MODE:
                os.chmod(p, SQLITE_FILE_MODE)
                log.warning("%s was readable by others: now mode %o", p, SQLITE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours to change: say so, the store still works
            log.warning("%s is readable by others and cannot be changed", p)
