"""The PostgreSQL fixture is a real server reachable through SQLAlchemy and psycopg."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy

from certdepot.testenv.postgres import PostgresEnv


def test_sqlalchemy_url_works(postgres: PostgresEnv) -> None:
    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS env_probe (v int)"))
            conn.execute(sqlalchemy.text("INSERT INTO env_probe VALUES (42)"))
            value = conn.execute(sqlalchemy.text("SELECT max(v) FROM env_probe")).scalar()
        assert value == 42
    finally:
        engine.dispose()
    assert postgres.url.startswith("postgresql+psycopg://")
    assert "127.0.0.1" in postgres.url


def test_listens_on_loopback_and_requires_password(postgres: PostgresEnv) -> None:
    wrong = postgres.dsn.replace(postgres.password, "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_new_database_is_separate(postgres: PostgresEnv) -> None:
    url = postgres.new_database("env_other")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == (
                "env_other"
            )
            exists = conn.execute(sqlalchemy.text("SELECT to_regclass('env_probe')")).scalar()
        assert exists is None
    finally:
        engine.dispose()


def test_restart_keeps_data_and_breaks_open_connections(postgres: PostgresEnv) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS env_restart (v int)")
        conn.execute("INSERT INTO env_restart VALUES (7)")
        postgres.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT v FROM env_restart").fetchone() == (7,)
