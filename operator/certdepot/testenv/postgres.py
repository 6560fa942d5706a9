"""A throwaway PostgreSQL server (the distribution's) on 127.0.0.1:<free port>.

    with PostgresEnv() as pg:
        engine = sqlalchemy.create_engine(pg.url)

``initdb`` into a temporary directory, then ``postgres`` itself (not pg_ctl, so we hold its
PID) with its unix socket in that directory and TCP only on loopback. PostgreSQL refuses to
run as root; as root we run it as the ``postgres`` account (or ``nobody``) and hand the
directory to that account. Durability is switched off (fsync, full_page_writes): test
data is disposable and the machine is shared.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from pathlib import Path

from certdepot.testenv import procs
from certdepot.testenv.provision import ProvisionError
from certdepot.testenv.system import find_pg_bindir, give_to, service_user

__all__ = ["PostgresEnv"]


class PostgresEnv(procs.Service):
    PROCESSES = ("process",)

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        user: str = "certdepot",
        database: str = "certdepot",
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(workdir, "certdepot-pg-")
        self.user = user
        self.database = database
        self.password = secrets.token_urlsafe(16)
        self.port = procs.free_port()
        self.host = "127.0.0.1"
        self.start_timeout = start_timeout
        self.process: procs.ManagedProcess | None = None
        self._os_user = service_user("postgres")
        bindir = find_pg_bindir()
        if bindir is None:
            raise ProvisionError(
                "PostgreSQL server binaries (initdb, postgres) not found: install the "
                "`postgresql` package (`make provision` does it as root on Debian), or set "
                "PG_BINDIR to the directory holding them."
            )
        self.bindir = bindir

    # --- URLs ------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return (
            f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    @property
    def dsn(self) -> str:
        """libpq connection URI, for psycopg.connect and psql."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    # --- lifecycle -------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def _initdb(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        give_to(self.workdir, self._os_user)
        proc = subprocess.run(
            [
                str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            ],
            capture_output=True, text=True, user=self._os_user, cwd=self.workdir,
        )
        pwfile.unlink()
        if proc.returncode != 0:
            raise procs.ProcessError(f"initdb failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> PostgresEnv:
        if not self.datadir.exists():
            self._initdb()
            self._run()
            self._create_database(self.database)
        else:
            self._run()
        return self

    def _run(self) -> None:
        self.process = procs.start(
            "postgres",
            [
                self.bindir / "postgres", "-D", self.datadir,
                "-p", str(self.port), "-k", self.workdir,
                "-c", f"listen_addresses={self.host}",
                "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "synchronous_commit=off", "-c", "max_connections=200",
            ],
            log_path=self.workdir / "postgres.log",
            user=self._os_user,
            # SIGTERM is "smart" shutdown: it waits for every client to disconnect.
            stop_signal=signal.SIGINT,
            cwd=self.workdir,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.process.check_running()
            try:
                with psycopg.connect(self.url_for("postgres").replace("+psycopg", ""),
                                     connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise self.process.fail(f"not accepting connections: {exc}") from None
                time.sleep(0.1)

    def _create_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            self.url_for("postgres").replace("+psycopg", ""), autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def new_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URL."""
        self._create_database(name)
        return self.url_for(name)

    def restart(self) -> None:
        """Fast-shutdown and start again on the same port with the same data: open
        connections break, new ones work once it is back."""
        if self.process is not None:
            self.process.stop()
        self._run()
