"""Hostile cases of the policy classes (issue 15 items 1, 2 and 7), on hostile.py's World.

- validity: a delegated or STAR order asking for dates or lifetimes outside the
  delegation's limits, backdated or post-dated, malformed; refused at newOrder with
  ``malformed`` (validity.py), nothing stored.
- grants: an order whose grant was withdrawn after it was opened (the admin edits the
  configuration): finalize, private-key, certificate and STAR certificate fetches are
  refused with ``unauthorized`` (grants.py), nothing stored (no key delivery recorded).
- STAR lifecycle: cancellation only of valid orders, nothing served or finalized after
  cancel (RFC 8739 §3.1.2, §3.3).

The grant cases change the configuration of the in-process repository (``Admin``), so
they run only in process; ``run`` puts the configuration back after each case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from hostile import TEMPLATE, WEB, Case, World, run_case

from certdepot.acme import crypto, csr_template, jws, keywrap
from certdepot.repository import delegation as delegation_logic
from certdepot.repository import store as tables
from certdepot.repository.config import Config
from certdepot.repository.state import Repo

SKEW = 300  # the default clockSkewAllowance
MAX = 2 * 86400  # maxLifetime of team-a's delegation "cdn"


def tenants_config() -> list[dict[str, Any]]:
    """hostile.py's tenants, with certificate GET allowed on team-a's delegation."""
    return [
        {"name": "team-a", "download": ["web"], "issue": ["*.a.example.test"],
         "delegations": [{"name": "cdn", "csrTemplate": TEMPLATE,
                          "namePatterns": ["cdn-*.example.test"], "maxLifetime": "2d",
                          "issuer": "local", "allowCertificateGet": True}]},
        {"name": "team-b", "download": [], "issue": ["*.b.example.test"],
         "delegations": [{"name": "b-only", "csrTemplate": TEMPLATE,
                          "namePatterns": ["b-*.example.test"], "issuer": "local"}]},
    ]


@dataclass
class Admin:
    """The in-process repository whose configuration the cases edit, as an admin would
    (edit the file, restart): a deep copy is edited, the original is put back after."""

    repo: Repo | None = None
    saved: Config | None = None
    cleanups: list[Callable[[Repo], None]] = field(default_factory=list)

    def edit(self, change: Callable[[Config], None]) -> None:
        assert self.repo is not None, "the fixture sets ADMIN.repo"
        if self.saved is None:
            self.saved = self.repo.config
        cfg = self.repo.config.model_copy(deep=True)
        change(cfg)
        self.repo.config = cfg

    def restore(self) -> None:
        if self.repo is not None and self.saved is not None:
            self.repo.config = self.saved
        self.saved = None
        while self.cleanups and self.repo is not None:
            self.cleanups.pop()(self.repo)


ADMIN = Admin()
POLICY_CASES: list[Case] = []


def pcase(name: str, status: int, ptype: str,
          prepare: Callable[[World], Awaitable[Any]] | None = None
          ) -> Callable[[Callable[[World, Any], Awaitable[httpx.Response]]], None]:
    def deco(fn: Callable[[World, Any], Awaitable[httpx.Response]]) -> None:
        POLICY_CASES.append(Case(name, status, ptype, fn, prepare))
    return deco


async def run(w: World, c: Case) -> None:
    try:
        await run_case(w, c)
    finally:
        ADMIN.restore()


def at(offset: float) -> str:
    """RFC 3339 for now + offset seconds."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def csr(names: list[str]) -> str:
    return jws.b64encode(csr_template.build_csr_for_template(
        TEMPLATE, crypto.generate_private_key(), names))


async def delegated(w: World, names: list[str], **extra: Any) -> httpx.Response:
    return await w.a.new_order(names, delegation=w.refs["a_deleg"], **extra)


# ---- item 1: validity at newOrder (a space: see also the hypothesis tests) -------------

_DATES: list[tuple[str, dict[str, Any]]] = [
    ("backdated-one-day", {"notBefore": at(-86400), "notAfter": at(3600)}),
    ("backdated-beyond-skew", {"notBefore": at(-2 * SKEW), "notAfter": at(3600)}),
    ("issue-15-2020-to-2036", {"notBefore": "2020-01-01T00:00:00Z",
                               "notAfter": "2036-01-01T00:00:00Z"}),
    ("postdated-one-day", {"notBefore": at(86400), "notAfter": at(86400 + 3600)}),
    ("notafter-before-notbefore", {"notBefore": at(0), "notAfter": at(-60)}),
    ("notafter-equals-notbefore", {"notBefore": at(60), "notAfter": at(60)}),
    ("longer-than-maxlifetime", {"notAfter": at(MAX + 3600)}),
    ("notafter-in-the-past", {"notAfter": at(-3600)}),
    ("notbefore-not-rfc3339", {"notBefore": "yesterday", "notAfter": at(3600)}),
    ("notafter-a-number", {"notAfter": 1893456000}),
    ("notbefore-time-only", {"notBefore": "12:00:00", "notAfter": at(3600)}),
    ("notafter-year-9999", {"notAfter": "9999-12-31T23:59:59Z"}),
]

_STAR: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("with-notafter", {"end-date": at(86400), "lifetime": 3600}, {"notAfter": at(3600)}),
    ("with-notbefore", {"end-date": at(86400), "lifetime": 3600}, {"notBefore": at(0)}),
    ("lifetime-over-max", {"end-date": at(9 * 86400), "lifetime": 3 * 86400}, {}),
    ("lifetime-plus-adjust-over-max", {"end-date": at(9 * 86400), "lifetime": MAX,
                                       "lifetime-adjust": 200}, {}),
    ("over-max-under-short-end-date", {"end-date": at(600), "lifetime": 3 * 86400}, {}),
    ("adjust-beyond-skew", {"end-date": at(86400), "lifetime": 3600,
                            "lifetime-adjust": 86400}, {}),
    ("adjust-negative", {"end-date": at(86400), "lifetime": 3600, "lifetime-adjust": -5}, {}),
    ("lifetime-zero", {"end-date": at(86400), "lifetime": 0}, {}),
    ("lifetime-negative", {"end-date": at(86400), "lifetime": -3600}, {}),
    ("lifetime-string", {"end-date": at(86400), "lifetime": "3600"}, {}),
    ("lifetime-bool", {"end-date": at(86400), "lifetime": True}, {}),
    ("lifetime-float", {"end-date": at(86400), "lifetime": 3600.5}, {}),
    ("lifetime-missing", {"end-date": at(86400)}, {}),
    ("end-date-past", {"end-date": at(-60), "lifetime": 3600}, {}),
    ("end-date-missing", {"lifetime": 3600}, {}),
    ("end-date-not-a-time", {"end-date": "soon", "lifetime": 3600}, {}),
    ("start-date-future", {"start-date": at(86400), "end-date": at(3 * 86400),
                           "lifetime": 3600}, {}),
    ("start-after-end", {"start-date": at(7200), "end-date": at(3600), "lifetime": 3600}, {}),
    ("longer-than-max-duration", {"end-date": at(400 * 86400), "lifetime": 3600}, {}),
    ("end-date-year-9999", {"end-date": "9999-12-31T23:59:59Z", "lifetime": 3600}, {}),
    ("lifetime-below-minimum", {"end-date": at(86400), "lifetime": 1}, {}),
    ("certificate-get-not-boolean", {"end-date": at(86400), "lifetime": 3600,
                                     "allow-certificate-get": "false"}, {}),
]


def _dates_case(name: str, extra: dict[str, Any]) -> None:
    @pcase(f"validity-{name}", 400, "malformed")
    async def send(w: World, s: Any) -> httpx.Response:
        return await delegated(w, ["cdn-v.example.test"], **extra)


def _star_case(name: str, ar: dict[str, Any], extra: dict[str, Any]) -> None:
    @pcase(f"star-{name}", 400, "malformed")
    async def send(w: World, s: Any) -> httpx.Response:
        return await delegated(w, ["cdn-s.example.test"], **{"auto-renewal": ar}, **extra)


for _n, _x in _DATES:
    _dates_case(_n, _x)
for _n, _a, _x in _STAR:
    _star_case(_n, _a, _x)


@pcase("star-not-an-object", 400, "malformed")
async def _star_str(w: World, s: Any) -> httpx.Response:
    return await delegated(w, ["cdn-s.example.test"], **{"auto-renewal": "yes"})


@pcase("star-certificate-get-not-allowed", 400, "malformed")
async def _star_get(w: World, s: Any) -> httpx.Response:
    return await w.b.new_order(["b-1.example.test"], delegation=w.refs["b_deleg"], **{
        "auto-renewal": {"end-date": at(86400), "lifetime": 3600,
                         "allow-certificate-get": True}})


@pcase("plain-order-with-auto-renewal", 400, "malformed")
async def _plain_star(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x5.a.example.test"], **{
        "auto-renewal": {"end-date": at(86400), "lifetime": 3600}})


@pcase("plain-order-with-notbefore", 400, "malformed")
async def _plain_nb(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x5.a.example.test"], notBefore=at(-86400))


# ---- item 2: grants evaluated again after newOrder -------------------------------------

def _no_download(cfg: Config) -> None:
    t = cfg.tenant("team-a")
    assert t is not None
    t.download = []


def _no_issue(cfg: Config) -> None:
    t = cfg.tenant("team-a")
    assert t is not None
    t.issue = ["only-this.a.example.test"]


def _no_delegation(cfg: Config) -> None:
    t = cfg.tenant("team-a")
    assert t is not None
    t.delegations = []


def _narrow_delegation(cfg: Config) -> None:
    t = cfg.tenant("team-a")
    assert t is not None
    t.delegations[0].name_patterns = ["edge-*.example.test"]


def _no_tenant(cfg: Config) -> None:
    cfg.tenants = [t for t in cfg.tenants if t.name != "team-a"]


def _web_renamed(cfg: Config) -> None:
    web = cfg.certificate("web")
    assert web is not None
    web.dns_names = [*WEB, "new.example.test"]


async def _ready_download(w: World) -> str:
    r = await w.a.new_order(WEB, download=True)
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


def _then(prepare: Callable[[World], Awaitable[Any]] | None,
          change: Callable[[Config], None]) -> Callable[[World], Awaitable[Any]]:
    """Prepare while granted, then withdraw the grant."""
    async def both(w: World) -> Any:
        state = await prepare(w) if prepare else None
        ADMIN.edit(change)
        return state
    return both


def _grant_case(name: str, prepare: Callable[[World], Awaitable[Any]] | None,
                change: Callable[[Config], None],
                send: Callable[[World, Any], Awaitable[httpx.Response]]) -> None:
    POLICY_CASES.append(Case(f"grant-{name}", 403, "unauthorized", send,
                             _then(prepare, change)))


async def _fin_download(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"ephemeral-jwk": keywrap.generate_ephemeral()[1]})


async def _privkey(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["dl_privkey"], None)


async def _dl_cert(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["dl_cert"], None)


async def _ready_plain(w: World) -> str:
    r = await w.a.new_order(["p7.a.example.test"])
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


async def _fin_plain(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"csr": jws.b64encode(crypto.build_csr(
        crypto.generate_private_key(), ["p7.a.example.test"]))})


async def _plain_cert(w: World, s: Any) -> httpx.Response:
    return await w.a.post(w.refs["plain_cert"], None)


async def _ready_delegated(w: World) -> str:
    r = await delegated(w, ["cdn-g.example.test"])
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return str(r.json()["finalize"])


async def _fin_delegated(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, {"csr": csr(["cdn-g.example.test"])})


async def _valid_delegated(w: World) -> str:
    fin = await _ready_delegated(w)
    f = await _fin_delegated(w, fin)
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    return str(f.json()["certificate"])


async def _fetch(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s, None)


async def _valid_star(w: World, get: bool = True) -> dict[str, str]:
    r = await delegated(w, ["cdn-star.example.test"], **{"auto-renewal": {
        "end-date": at(86400), "lifetime": 3600, "allow-certificate-get": get}})
    assert r.status_code == 201, r.text
    f = await w.a.post(r.json()["finalize"], {"csr": csr(["cdn-star.example.test"])})
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    assert ADMIN.repo is not None
    row = ADMIN.repo.store.get(tables.orders, r.headers["Location"].rsplit("/", 1)[1])
    assert row is not None
    return {"order": r.headers["Location"], "star": f.json()["star-certificate"],
            "cert": ADMIN.repo.urls.certificate(row["cert_id"])}


async def _star_get(w: World, s: Any) -> httpx.Response:
    return await w.http.get(s["star"])


async def _star_post(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s["star"], None)


for _name, _prep, _change, _send in [
    ("download-finalize-after-grant-removed", _ready_download, _no_download, _fin_download),
    ("download-finalize-after-tenant-removed", _ready_download, _no_tenant, _fin_download),
    ("download-finalize-after-names-changed", _ready_download, _web_renamed, _fin_download),
    ("private-key-after-grant-removed", None, _no_download, _privkey),
    ("private-key-after-tenant-removed", None, _no_tenant, _privkey),
    ("private-key-after-names-changed", None, _web_renamed, _privkey),
    ("download-certificate-after-grant-removed", None, _no_download, _dl_cert),
    ("plain-finalize-after-issue-narrowed", _ready_plain, _no_issue, _fin_plain),
    ("plain-certificate-after-issue-narrowed", None, _no_issue, _plain_cert),
    ("plain-finalize-after-tenant-removed", _ready_plain, _no_tenant, _fin_plain),
    ("delegated-finalize-after-delegation-removed", _ready_delegated, _no_delegation,
     _fin_delegated),
    ("delegated-finalize-after-patterns-narrowed", _ready_delegated, _narrow_delegation,
     _fin_delegated),
    ("delegated-certificate-after-delegation-removed", _valid_delegated, _no_delegation,
     _fetch),
    ("star-get-after-delegation-removed", _valid_star, _no_delegation, _star_get),
    ("star-post-after-patterns-narrowed", _valid_star, _narrow_delegation, _star_post),
    ("star-get-after-tenant-removed", _valid_star, _no_tenant, _star_get),
]:
    _grant_case(_name, _prep, _change, _send)


# ---- item 7: STAR lifecycle ---------------------------------------------------------------

async def _ready_star(w: World) -> dict[str, str]:
    r = await delegated(w, ["cdn-rs.example.test"], **{"auto-renewal": {
        "end-date": at(86400), "lifetime": 3600}})
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return {"order": r.headers["Location"], "finalize": r.json()["finalize"]}


@pcase("star-cancel-ready-order", 400, "autoRenewalCancellationInvalid", prepare=_ready_star)
async def _cancel_ready(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s["order"], {"status": "canceled"})


async def _canceled_star(w: World) -> dict[str, str]:
    s = await _valid_star(w)
    r = await w.a.post(s["order"], {"status": "canceled"})
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    return s


@pcase("star-cancel-twice", 400, "autoRenewalCancellationInvalid", prepare=_canceled_star)
async def _cancel_again(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s["order"], {"status": "canceled"})


@pcase("star-get-after-cancel", 403, "autoRenewalCanceled", prepare=_canceled_star)
async def _get_canceled(w: World, s: Any) -> httpx.Response:
    return await w.http.get(s["star"])


@pcase("star-certificate-url-after-cancel", 403, "autoRenewalCanceled",
       prepare=_canceled_star)
async def _cert_canceled(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s["cert"], None)


async def _ready_star_cancelled_by_admin(w: World) -> dict[str, str]:
    s = await _ready_star(w)
    assert ADMIN.repo is not None
    delegation_logic.cancel(ADMIN.repo.store, "team-a", "cdn")
    # The delegation itself comes back for the cases after this one.
    ADMIN.cleanups.append(lambda repo: repo.store.delete_blob("delegation-cancelled:team-a"))
    return s


@pcase("star-finalize-after-cancel", 403, "orderNotReady",
       prepare=_ready_star_cancelled_by_admin)
async def _fin_canceled(w: World, s: Any) -> httpx.Response:
    return await w.a.post(s["finalize"], {"csr": csr(["cdn-rs.example.test"])})


# ---- a proof of control lasts as long as its authorizations ------------------------------

async def _proved_download(w: World) -> str:
    """team-b (no grant) proves control of proof.example.test (validation done by hand in
    the store, as the validator would), downloads, then the proof expires."""
    repo = ADMIN.repo
    assert repo is not None
    r = await w.b.new_order(["proof.example.test"], download=True)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    for url in r.json()["authorizations"]:
        row = repo.store.get(tables.authzs, url.rsplit("/", 1)[1])
        assert row is not None
        done = [{**c, "status": "valid"} for c in row["challenges"][:1]]
        repo.store.update(tables.authzs, row["id"], status="valid", challenges=done)
    f = await w.b.post(r.json()["finalize"], {"ephemeral-jwk": keywrap.generate_ephemeral()[1]})
    assert f.status_code == 200 and f.json()["status"] == "valid", f.text
    key_url = str(f.json()["private-key"])
    ok = await w.b.post(key_url, None)
    assert ok.status_code == 200, ok.text  # proved: served
    for url in r.json()["authorizations"]:
        repo.store.update(tables.authzs, url.rsplit("/", 1)[1], expires=repo.clock() - 1)
    return key_url


@pcase("grant-private-key-after-proof-expired", 403, "unauthorized", prepare=_proved_download)
async def _proof_expired(w: World, s: Any) -> httpx.Response:
    return await w.b.post(s, None)
