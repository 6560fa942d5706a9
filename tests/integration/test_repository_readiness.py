"""The repository's /readyz follows its store: a real repository process on a real
PostgreSQL server (its own, so no other test sees the outage) that stops and comes back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from repository_harness import base_config, running, write_config

from certdepot.testenv import procs
from certdepot.testenv.postgres import PostgresEnv


def _wait_status(url: str, verify: object, want: int, timeout: float) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.get(url, verify=verify, timeout=10).status_code  # type: ignore[arg-type]
        except httpx.HTTPError:
            status = -1
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == want:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered {want} within {timeout}s (saw {seen})")


def test_not_ready_while_the_store_is_down(tmp_path: Path) -> None:
    with PostgresEnv() as pg:
        port = procs.free_port()
        config = write_config(tmp_path, base_config(tmp_path, port, storage={"url": pg.url}))
        with running(tmp_path, config, port) as repo:
            ready, verify = f"{repo.base_url}/readyz", repo.ssl_context()
            assert _wait_status(ready, verify, 200, 10)[-1] == 200
            assert pg.process is not None
            pg.process.stop()
            assert _wait_status(ready, verify, 503, 30)[-1] == 503
            # Alive all the same: an outage of the store must not restart the pod.
            assert httpx.get(f"{repo.base_url}/healthz", verify=verify).status_code == 200
            pg.restart()
            assert _wait_status(ready, verify, 200, 30)[-1] == 200
