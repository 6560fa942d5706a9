"""Hypothesis fuzz of the raw HTTP header block and body of every POST endpoint (and the
renewalInfo GET) of a real ``certdepot repository serve`` over TLS: no answer is a 5xx,
every 4xx is an ACME problem document (see fuzz_http.py for what is drawn).

Bounded: ``EXAMPLES`` per endpoint, each request on its own connection; the read
deadlines are short so a request whose framing the fuzz broke costs seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fuzz_http import (
    FuzzEndpoint,
    FuzzTarget,
    Tally,
    bodies,
    check_answer,
    exchange,
    header_lists,
    path_of,
    request_bytes,
)
from hostile import World, build_world, certificates_config, tenants_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repository_harness import base_config, create_tenant, running, write_config

from certdepot.repository import certstore
from certdepot.repository.store import Store
from certdepot.repository.tenants import EabCredentials
from certdepot.testenv import procs

EXAMPLES = 60
TALLY = Tally()
LOGS: list[Path] = []
ENDPOINT_REFS = [  # (name, World.refs key); the ready orders are made by the fixture
    ("newAccount", "new_account"), ("newOrder", "new_order"), ("order", "plain_order"),
    ("finalizePending", "a_pend_finalize"), ("finalizePlain", "ready_plain_finalize"),
    ("finalizeDownload", "ready_dl_finalize"), ("finalizeDelegation", "ready_dg_finalize"),
    ("authz", "a_pend_authz"), ("challenge", "a_pend_chall"), ("certificate", "plain_cert"),
    ("privateKey", "dl_privkey"), ("account", "a_acct"), ("ordersList", "a_orders"),
    ("keyChange", "key_change"), ("revokeCert", "revoke"), ("delegations", "a_delegs"),
    ("delegation", "a_deleg"), ("star", "star"), ("renewalInfoPost", "renewal_info_post"),
]


@pytest.fixture(scope="module")
async def fuzz_world(tmp_path_factory: pytest.TempPathFactory
                     ) -> AsyncIterator[tuple[World, FuzzTarget]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = procs.free_port()
    cfg = base_config(tmp, port, issuers=[{"name": "local", "type": "local-ca",
                                           "lifetime": "2d"}],
                      defaultIssuer="local", certificates=certificates_config(),
                      tenants=tenants_config(),
                      limits={"headerReadTimeout": 3, "bodyReadTimeout": 3})
    path = write_config(tmp, cfg)
    creds = {t: EabCredentials(t, *create_tenant(tmp, path, t)) for t in ("team-a", "team-b")}
    store = Store(f"sqlite:///{tmp / 'repo.db'}")
    with running(tmp, path, port, name="fuzzed") as proc:
        for _ in range(100):
            if certstore.current_managed(store, "web") is not None:
                break
            await asyncio.sleep(0.2)
        trust = ssl.create_default_context(cafile=str(proc.ca_path))
        async with httpx.AsyncClient(verify=trust, timeout=30) as http:
            w = await build_world(http, proc.base_url, store, creds, lease_expiry_moves=True)
            await _ready_orders(w)
            LOGS.append(proc.proc.log_path)
            yield w, FuzzTarget("127.0.0.1", port, trust, proc.base_url, w.a.kid or "",
                                w.a.key)
    store.close()


async def _ready_orders(w: World) -> None:
    """Orders whose finalize parses a CSR, an ephemeral key, a delegated CSR."""
    for ref, kw, names in (("ready_plain_finalize", {}, ["x5.a.example.test"]),
                           ("ready_dl_finalize", {"download": True},
                            ["example.test", "www.example.test"]),
                           ("ready_dg_finalize", {"delegation": w.refs["a_deleg"]},
                            ["cdn-7.example.test"])):
        r = await w.a.new_order(names, **kw)
        assert r.status_code == 201 and r.json()["status"] == "ready", r.text
        w.refs[ref] = r.json()["finalize"]
    w.refs["star"] = w.base + "/acme/star/" + w.refs["plain_order"].rsplit("/", 1)[1]
    w.refs["renewal_info_post"] = w.refs["renewal_info"].rstrip("/") + "/x"


def _endpoints() -> list[FuzzEndpoint]:
    eps = [FuzzEndpoint(name, ref, uses_jwk=name == "newAccount")
           for name, ref in ENDPOINT_REFS]
    return [*eps, FuzzEndpoint("renewalInfo", "renewal_info", method="GET")]


def _fuzz(w: World, t: FuzzTarget, ref_ep: FuzzEndpoint, deadline: float) -> None:
    ep = FuzzEndpoint(ref_ep.name, w.refs[ref_ep.path][len(w.base):].rstrip("/") +
                      ("/" if ref_ep.method == "GET" else ""), ref_ep.method, ref_ep.uses_jwk)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        if time.monotonic() > deadline:
            return  # time-bounded: what ran so far stands
        body = data.draw(bodies(t, ep), label="body")
        headers = data.draw(header_lists(), label="headers")
        suffix = data.draw(st.text(max_size=40), label="path") if ep.method == "GET" else ""
        reply = exchange(t, request_bytes(t, ep.method, path_of(t, ep, suffix), body,
                                          headers))
        status, ptype = check_answer(reply, f"{ep.name}: body {body[:200]!r} "
                                             f"headers {headers!r}")
        TALLY.statuses[(ep.name, status)] += 1
        TALLY.types[ptype or str(status)] += 1

    one()


@pytest.mark.parametrize("ep", [pytest.param(e, id=e.name) for e in _endpoints()])
async def test_fuzz_endpoint(fuzz_world: tuple[World, FuzzTarget], ep: FuzzEndpoint) -> None:
    w, t = fuzz_world
    before = TALLY.total()
    # Hypothesis drives blocking sockets in a worker thread; the world's own client stays
    # on the test loop.
    await asyncio.to_thread(_fuzz, w, t, ep, time.monotonic() + 120)
    ran = TALLY.total() - before
    assert ran >= EXAMPLES // 2, f"{ep.name}: only {ran} examples ran"


def test_fuzz_summary() -> None:
    by_status: dict[int, int] = {}
    for (_, status), n in TALLY.statuses.items():
        by_status[status] = by_status.get(status, 0) + n
    print(f"fuzz: {TALLY.total()} requests over {len(_endpoints())} endpoints; "
          f"statuses {dict(sorted(by_status.items()))}; types {dict(TALLY.types)}")
    assert TALLY.total() >= len(_endpoints()) * EXAMPLES // 2
    assert not any(s >= 500 for s in by_status)


def test_fuzzed_log_is_quiet() -> None:
    """No traceback, no internal error: every fuzzed request was refused on purpose."""
    assert LOGS, "the fuzz did not run"
    log = LOGS[0].read_text(errors="replace")
    for bad in ("Traceback", "Exception in ASGI application", "internal error"):
        assert bad not in log, f"{bad!r} in the fuzzed repository's log:\n{log[-3000:]}"
