"""The SQL statements a download session costs (issue 21): each signed request reads its
account and its tenant's row in one statement, and nothing is read twice. A budget, so a
change that adds a round trip per request shows here before it shows in the benchmark."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from repository_testkit import Env
from test_download import WEB, _download, _obtain

from certdepot.repository import store as tables
from certdepot.repository import tenants

#: newOrder 5, finalize 5, certificate 4, private key 6 (docs/performance.md).
DOWNLOAD_SESSION_STATEMENTS = 20


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def verbs(self) -> Counter[str]:
        return Counter(s.split(None, 1)[0] for s in self.seen)


@pytest.fixture
def statements(env: Env) -> Iterator[Statements]:
    seen = Statements()
    sa.event.listen(env.repo.store.engine, "before_cursor_execute", seen)
    yield seen
    sa.event.remove(env.repo.store.engine, "before_cursor_execute", seen)


async def test_download_session_statement_budget(env: Env, statements: Statements) -> None:
    await _obtain(env)
    c = await env.tenant_client("team-a")
    await _download(c, WEB)  # the first: nonce batch, consumer row
    statements.seen.clear()
    await _download(c, WEB)
    # Nonces come in batches shared by all requests: not this session's cost.
    own = [s for s in statements.seen if "nonces" not in s or s.startswith("DELETE")]
    assert len(own) <= DOWNLOAD_SESSION_STATEMENTS, "\n".join(own)
    assert not [s for s in own if s.startswith("SELECT tenants.")], "tenant read again"
    assert statements.verbs()["DELETE"] == 4  # every request still consumes its nonce


def test_account_read_says_whether_the_tenant_is_held(env: Env) -> None:
    store = env.repo.store
    for acct_id, tenant in (("a1", "team-a"), ("a2", "gone"), ("a3", None)):
        store.insert(tables.accounts, id=acct_id, thumbprint=acct_id, jwk={}, status="valid",
                     contact=[], tenant=tenant, created=0.0)
    assert store.get(tables.tenants, "team-a") is not None  # the env created it
    held = {a: (store.account(a) or {}).get(tables.TENANT_HELD) for a in ("a1", "a2", "a3")}
    assert held == {"a1": True, "a2": False, "a3": False}
    assert store.account("nobody") is None
    gone = store.account("a2")
    assert gone is not None and tenants.standing(env.repo, gone) == (None, tenants.DELETED)
