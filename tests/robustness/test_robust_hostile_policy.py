"""The policy classes of the hostile suite (hostile_policy.py) against the in-process app:
the case table, hypothesis properties over the validity space (random notBefore/notAfter
and STAR lifetimes against a random maxLifetime), the refusal metric, and the STAR
end-date cap."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hostile import World, build_world, certificates_config, check_problem, snapshot
from hostile_policy import ADMIN, POLICY_CASES, SKEW, at, csr, delegated, run, tenants_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repository_testkit import BASE, make_config

from certdepot.acme import crypto
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import renewal, star
from certdepot.repository import store as tables
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.config import Config
from certdepot.repository.tenants import create_tenant

PROPS = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
# Keep generated values this far from every limit: requests take time to arrive.
MARGIN = 20


@pytest.fixture(scope="module")
async def pworld() -> AsyncIterator[World]:
    repo = build_repo(make_config(tenants=tenants_config(), certificates=certificates_config(),
                                  starMinLifetime="2s"))
    await renewal.run_once(repo)
    app = create_app(repo)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    creds = {t.name: create_tenant(repo.store, repo.vault, t.name) for t in repo.config.tenants}
    w = await build_world(http, BASE, repo.store, creds)
    ADMIN.repo = repo
    w.app = app  # type: ignore[attr-defined]
    yield w
    ADMIN.repo = None
    await http.aclose()
    for t in list(repo.tasks):
        t.cancel()
    repo.store.close()


def test_table_size() -> None:
    assert len(POLICY_CASES) >= 30


@pytest.mark.parametrize("c", [pytest.param(c, id=c.name) for c in POLICY_CASES])
async def test_policy_case(pworld: World, c: Any) -> None:
    await run(pworld, c)


def _refusals(w: World, step: str) -> float:
    registry = w.app.state.metrics.registry  # type: ignore[attr-defined]
    total = 0.0
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "certdepot_repository_policy_refusals_total" and \
                    s.labels.get("step") == step:
                total += s.value
    return total


def _set_max(hours: int) -> None:
    def change(cfg: Config) -> None:
        t = cfg.tenant("team-a")
        assert t is not None
        t.delegations[0].max_lifetime = dt.timedelta(hours=hours)
    ADMIN.edit(change)


def _near(value: float, limit: float) -> bool:
    return abs(value - limit) < MARGIN


@PROPS
@given(max_h=st.integers(1, 30 * 24), nb=st.none() | st.integers(-3 * 86400, 3 * 86400),
       span=st.integers(-86400, 40 * 86400))
async def test_dates_against_max_lifetime(pworld: World, max_h: int, nb: int | None,
                                          span: int) -> None:
    """Accepted exactly when notBefore is within the skew allowance of now and the span is
    positive and within maxLifetime; a refusal is malformed and stores nothing."""
    limit = max_h * 3600
    start = 0 if nb is None else nb
    if _near(start, SKEW) or _near(start, -SKEW) or _near(span, 0) or _near(span, limit):
        return
    extra: dict[str, Any] = {"notAfter": at(start + span)}
    if nb is not None:
        extra["notBefore"] = at(nb)
    ok = -SKEW < start < SKEW and 0 < span <= limit
    _set_max(max_h)
    try:
        before = snapshot(pworld)
        r = await delegated(pworld, ["cdn-p.example.test"], **extra)
        if ok:
            assert r.status_code == 201, (extra, limit, r.text)
            assert r.json()["notAfter"] == extra["notAfter"]
        else:
            check_problem(r, 400, "malformed")
            assert snapshot(pworld)[0] == before[0], "a refused newOrder changed the store"
    finally:
        ADMIN.restore()


@PROPS
@given(max_h=st.integers(1, 72), lifetime=st.integers(-10, 5 * 86400),
       adjust=st.integers(-10, 2 * SKEW), end=st.integers(-3600, 30 * 86400))
async def test_star_against_max_lifetime(pworld: World, max_h: int, lifetime: int,
                                         adjust: int, end: int) -> None:
    limit = max_h * 3600
    if any(_near(v, b) for v, b in ((lifetime + adjust, limit), (adjust, SKEW), (end, 0),
                                    (lifetime, 2), (adjust, 0))):
        return
    ok = lifetime >= 2 and 0 <= adjust <= SKEW and lifetime + adjust <= limit and end > 0
    ar = {"end-date": at(end), "lifetime": lifetime, "lifetime-adjust": adjust}
    _set_max(max_h)
    try:
        before = snapshot(pworld)
        r = await delegated(pworld, ["cdn-q.example.test"], **{"auto-renewal": ar})
        if ok:
            assert r.status_code == 201, (ar, limit, r.text)
        else:
            check_problem(r, 400, "malformed")
            assert snapshot(pworld)[0] == before[0], "a refused newOrder changed the store"
    finally:
        ADMIN.restore()


async def test_refusals_are_counted(pworld: World) -> None:
    before = _refusals(pworld, "private-key")
    t = pworld.store  # the grant goes, then comes back
    ADMIN.edit(lambda cfg: setattr(cfg.tenant("team-a"), "download", []))
    try:
        r = await pworld.a.post(pworld.refs["dl_privkey"], None)
        check_problem(r, 403, "unauthorized")
    finally:
        ADMIN.restore()
    assert _refusals(pworld, "private-key") == before + 1
    deliveries = len(t.find(tables.deliveries, account_id=pworld.a.kid.rsplit("/", 1)[1]))
    ok = await pworld.a.post(pworld.refs["dl_privkey"], None)
    assert ok.status_code == 200, ok.text  # granted again: served again
    assert len(t.find(tables.deliveries, account_id=pworld.a.kid.rsplit("/", 1)[1])) \
        == deliveries + 1


async def test_star_renewal_capped_at_end_date_and_stopped_by_policy(pworld: World) -> None:
    """Item 7: the last STAR certificate ends at end-date, never later; item 2: a renewal
    after the grant went issues nothing and cancels the order."""
    repo = ADMIN.repo
    assert repo is not None
    end = at(7)
    r = await delegated(pworld, ["cdn-end.example.test"], **{"auto-renewal": {
        "end-date": end, "lifetime": 4, "allow-certificate-get": True}})
    assert r.status_code == 201, r.text
    f = await pworld.a.post(r.json()["finalize"], {"csr": csr(["cdn-end.example.test"])})
    assert f.status_code == 200, f.text
    order_id = r.headers["Location"].rsplit("/", 1)[1]
    end_ts = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    seen: list[crypto.x509.Certificate] = []
    for _ in range(40):
        got = await pworld.http.get(f.json()["star-certificate"])
        if got.status_code != 200:
            break
        leaf = crypto.parse_pem_chain(got.text)[0]
        if not seen or leaf.serial_number != seen[-1].serial_number:
            seen.append(leaf)
        await star.run_once(repo)
        await asyncio.sleep(0.5)
    assert len(seen) >= 2, "no renewal within the window"
    assert all(c.not_valid_after_utc <= end_ts for c in seen), [
        c.not_valid_after_utc for c in seen]
    assert seen[-1].not_valid_after_utc == end_ts, "the last certificate ends at end-date"
    row = repo.store.get(tables.orders, order_id)
    assert row is not None
    assert len(repo.store.find(tables.certificates, order_id=order_id)) == len(seen)

    # A second order, renewed after the delegation narrowed: canceled, nothing issued.
    r = await delegated(pworld, ["cdn-pol.example.test"], **{"auto-renewal": {
        "end-date": at(3600), "lifetime": 4}})
    f = await pworld.a.post(r.json()["finalize"], {"csr": csr(["cdn-pol.example.test"])})
    order_id = r.headers["Location"].rsplit("/", 1)[1]
    counted = _refusals(pworld, "star-renewal")

    def narrow(cfg: Config) -> None:
        t = cfg.tenant("team-a")
        assert t is not None
        t.delegations[0].name_patterns = ["edge-*.example.test"]

    ADMIN.edit(narrow)
    try:
        await asyncio.sleep(2.5)  # past half-time
        await star.run_once(repo)
    finally:
        ADMIN.restore()
    assert len(repo.store.find(tables.certificates, order_id=order_id)) == 1
    gone = await pworld.a.post(f.json()["star-certificate"], None)
    check_problem(gone, 403, "autoRenewalCanceled")
    assert _refusals(pworld, "star-renewal") == counted + 1


async def test_lowered_max_lifetime_stops_star_renewal(pworld: World) -> None:
    """The window is computed again at renewal with the limits in force then."""
    repo = ADMIN.repo
    assert repo is not None
    r = await delegated(pworld, ["cdn-low.example.test"], **{"auto-renewal": {
        "end-date": at(3600), "lifetime": 4}})
    f = await pworld.a.post(r.json()["finalize"], {"csr": csr(["cdn-low.example.test"])})
    assert f.status_code == 200, f.text
    order_id = r.headers["Location"].rsplit("/", 1)[1]
    ADMIN.edit(lambda cfg: setattr(cfg.tenant("team-a").delegations[0],  # type: ignore[union-attr]
                                   "max_lifetime", dt.timedelta(seconds=2)))
    try:
        await asyncio.sleep(2.5)
        await star.run_once(repo)
    finally:
        ADMIN.restore()
    assert len(repo.store.find(tables.certificates, order_id=order_id)) == 1
    row = repo.store.get(tables.orders, order_id)
    assert row is not None and row["data"].get("star_cancelled") is True


def test_window_refuses_rather_than_clamps() -> None:
    """The one check, directly: every refusal names the limit; nothing is shortened."""
    from certdepot.repository import validity

    lim = validity.Limits(max_lifetime=86400, latest=None, skew=SKEW)
    now = 1_800_000_000.0
    ok = validity.window(validity.Requested(not_after=validity_time(now + 86400)), lim, now)
    assert ok.lifetime == 86400
    for req in (validity.Requested(not_after=validity_time(now + 86402)),
                validity.Requested(not_before=validity_time(now - SKEW - 2),
                                   not_after=validity_time(now + 3600)),
                validity.Requested(lifetime=86402, end_date=validity_time(now + 9e5))):
        with pytest.raises(AcmeProblem) as err:
            validity.window(req, lim, now)
        assert err.value.short_type == "malformed"
    capped = validity.window(validity.Requested(lifetime=3600,
                                                end_date=validity_time(now + 60)), lim, now)
    assert capped.not_after == now + 60  # RFC 8739 end-date: the one cap the RFC defines


def validity_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
