"""A replica killed with SIGKILL while it renews an entry must not block that entry's
renewal for long: the lease it leaves behind is what the next replica waits for (finding R3,
fixed in 161691a with a 30 s lease kept alive by a heartbeat)."""

from __future__ import annotations

import time

from repository_testkit import make_config

from certdepot.repository import renewal
from certdepot.repository import store as tables
from certdepot.repository.bootstrap import build_repo


async def test_lease_left_by_a_killed_replica_expires_soon() -> None:
    repo = build_repo(make_config())
    try:
        # What a replica does right before it is killed inside check_one():
        assert repo.store.acquire_lease("renew:web", "killed-replica", renewal.LEASE_SECONDS)
        row = repo.store.get(tables.leases, "renew:web")
        assert row is not None
        assert row["expires"] - time.time() <= 120, "entry blocked for over two minutes"
    finally:
        repo.store.close()
