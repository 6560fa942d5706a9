"""The admin API attacked, against a real ``certdepot repository serve`` process over TLS
(issue 20's tenant API and the older certificate rotation and inventory): bearer tokens
missing, wrong, empty, huge; bodies that are not a small JSON object (deep, huge, wrong
types, duplicate members, not UTF-8, NUL); tenant names no URL or configuration can carry;
wrong methods and content types; ``force`` spelled every way; concurrent creation.

Every answer must be below 500, a problem document (``application/problem+json``) when it
refuses, and change nothing it should not; an EAB key appears only in the answers that
mint it (with ``Cache-Control: no-store``) and never in the repository's log."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repository_harness import RepoProcess, base_config, running, write_config

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.repository import tenants
from certdepot.repository.routes import admin as admin_routes
from certdepot.testenv import procs

TOKEN = "admin-token-" + "z" * 40
ACME = "urn:ietf:params:acme:error:"
PROBLEM = "application/problem+json"


@dataclass
class Admin:
    repo: RepoProcess
    http: httpx.AsyncClient
    minted: list[str]  # every HMAC key an answer carried: none may reach the log

    @property
    def url(self) -> str:
        return f"{self.repo.base_url}/admin/v1"

    async def send(self, method: str, path: str, *, auth: str | None = f"Bearer {TOKEN}",
                   **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = auth
        res = await self.http.request(method, self.url + path, headers=headers, **kw)
        if res.headers.get("content-type", "").startswith("application/json"):
            key = res.json().get("eabHmacKey") if isinstance(res.json(), dict) else None
            if key:
                self.minted.append(key)
        return res


@pytest.fixture(scope="module")
async def admin(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Admin]:
    tmp = tmp_path_factory.mktemp("admin")
    (tmp / "admin-token").write_text(TOKEN)
    port = procs.free_port()
    cfg = base_config(tmp, port, issuers=[{"name": "local", "type": "local-ca",
                                           "lifetime": "2d"}],
                      defaultIssuer="local",
                      certificates=[{"name": "web", "dnsNames": ["web.example.test"],
                                     "issuer": "local"}],
                      tenants=[{"name": "team-a", "download": ["web"],
                                "issue": ["*.a.example.test"]}],
                      admin={"tokenFile": str(tmp / "admin-token")})
    with running(tmp, write_config(tmp, cfg), port) as repo:
        async with httpx.AsyncClient(verify=repo.ssl_context(), timeout=60) as http:
            yield Admin(repo, http, [])


def problem(res: httpx.Response, status: int, kind: str = "malformed") -> None:
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"].startswith(PROBLEM), res.headers
    body = res.json()
    assert body["status"] == status, body
    want = kind if kind.startswith("urn:") else ACME + kind
    assert body["type"] == want, body
    assert "eabHmacKey" not in res.text


# --- authentication -----------------------------------------------------------------------

ENDPOINTS = [("GET", "/tenants"), ("POST", "/tenants"), ("POST", "/tenants/team-a/rotate"),
             ("DELETE", "/tenants/team-a"), ("POST", "/certificates/web/rotate"),
             ("GET", "/inventory")]

BAD_AUTH = [None, "", "Bearer", f"Basic {TOKEN}", f"Token {TOKEN}",
            TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}Z",
            f"Bearer {TOKEN.upper()}", f"Bearer x{TOKEN}", f"Bearer {TOKEN[:12]}",
            "Bearer " + "A" * 4000, f"Bearer {TOKEN} {TOKEN}", f"Bearer\t{TOKEN}x"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("auth", BAD_AUTH, ids=range(len(BAD_AUTH)))
async def test_refused_without_the_token(admin: Admin, method: str, path: str,
                                         auth: str | None) -> None:
    res = await admin.send(method, path, auth=auth, json={"name": "intruder"})
    problem(res, 401, "unauthorized")
    assert res.headers["www-authenticate"].startswith("Bearer")


def test_the_comparison_hides_the_tokens_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """compare_digest returns early when lengths differ: the API compares fixed-length
    digests instead, so a timing attacker cannot learn the token's length either."""
    compared: list[tuple[int, int]] = []
    real = admin_routes.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(admin_routes.hmac, "compare_digest", spy)
    assert not admin_routes._same("x", TOKEN) and admin_routes._same(TOKEN, TOKEN)
    assert not admin_routes._same("", TOKEN) and not admin_routes._same(TOKEN * 50, TOKEN)
    assert compared and all(a == b == 32 for a, b in compared), compared


async def test_a_header_too_large_is_refused_not_crashed(admin: Admin) -> None:
    res = await admin.send("GET", "/tenants", auth="Bearer " + "A" * 70_000)
    assert 400 <= res.status_code < 500, res.status_code


async def test_non_latin1_token_is_refused(admin: Admin) -> None:
    res = await admin.send("GET", "/tenants", auth=None,
                           headers=[("Authorization", "Bearer tökèn€".encode())])
    problem(res, 401, "unauthorized")


async def test_a_refused_path_is_logged_quoted(admin: Admin) -> None:
    """The refusal log names the path: control characters in it (a terminal escape, a
    carriage return) must not reach the log raw."""
    res = await admin.send("POST", "/tenants/x%1B%5B31mFORGED%0DLINE/rotate", auth=None)
    problem(res, 401, "unauthorized")
    log = admin.repo.proc.log_path.read_text()
    assert "FORGED" in log and "\x1b" not in log and "FORGED\rLINE" not in log


async def test_nothing_was_created_by_refused_requests(admin: Admin) -> None:
    names = {t["name"] for t in (await admin.send("GET", "/tenants")).json()["tenants"]}
    assert "intruder" not in names


# --- bodies ------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes]] = [
    ("not-json", b"name=x"),
    ("array", b'["x"]'),
    ("string", b'"x"'),
    ("number", b"5"),
    ("null", b"null"),
    ("truncated", b'{"name": "x"'),
    ("deep-arrays", b"[" * 3000),
    ("deep-objects", b'{"a":' * 800),
    ("name-number", b'{"name": 5}'),
    ("name-null", b'{"name": null}'),
    ("name-list", b'{"name": ["x"]}'),
    ("name-object", b'{"name": {"x": 1}}'),
    ("name-bool", b'{"name": true}'),
    ("no-name", b"{}"),
    ("empty-body", b""),
    ("name-empty", b'{"name": ""}'),
    ("name-slash", b'{"name": "a/b"}'),
    ("name-space", b'{"name": "a b"}'),
    ("name-nul", b'{"name": "a\\u0000b"}'),
    ("name-newline", b'{"name": "a\\nb"}'),
    ("name-dot", b'{"name": "."}'),
    ("name-dotdot", b'{"name": ".."}'),
    ("name-too-long", json.dumps({"name": "n" * 201}).encode()),
    ("name-lone-surrogate", b'{"name": "a\\ud800"}'),
    ("non-utf8", b'{"name": "\xff\xfe"}'),
    ("utf16", '{"name": "x"}'.encode("utf-16")),
    ("duplicate-name", b'{"name": "dup-a", "name": "dup-b"}'),
    ("nan", b'{"name": "x", "n": NaN}'),
    ("trailing-junk", b'{"name": "x"} {}'),
]


@pytest.mark.parametrize(("label", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_create_body_is_malformed(admin: Admin, label: str, body: bytes) -> None:
    res = await admin.send("POST", "/tenants", content=body,
                           headers={"Content-Type": "application/json"})
    problem(res, 400)
    names = {t["name"] for t in (await admin.send("GET", "/tenants")).json()["tenants"]}
    assert not {"dup-a", "dup-b", "x", "a/b", "..", "."} & names, names


async def test_huge_body_is_too_large(admin: Admin) -> None:
    body = json.dumps({"name": "big", "pad": "x" * 100_000}).encode()
    res = await admin.send("POST", "/tenants", content=body,
                           headers={"Content-Type": "application/json"})
    problem(res, 413)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonx"])
async def test_wrong_content_type_is_refused(admin: Admin, ctype: str) -> None:
    res = await admin.send("POST", "/tenants", content=b'{"name": "ctype"}',
                           headers={"Content-Type": ctype})
    problem(res, 415)


@pytest.mark.parametrize("body", [b'{"reason": 5}', b'{"reason": null}', b"[1]", b"{",
                                  b'{"reason": "nope"}', b'{"reason": "a", "reason": "b"}'])
async def test_bad_certificate_rotation_body(admin: Admin, body: bytes) -> None:
    res = await admin.send("POST", "/certificates/web/rotate", content=body,
                           headers={"Content-Type": "application/json"})
    assert res.status_code == 400, res.text
    assert res.headers["content-type"].startswith(PROBLEM)


# --- names in the path, methods ----------------------------------------------------------

MISSING = ["nobody", "%00", "x" * 300, "%E2%80%AE", "team-a%20", "%2E%2E", "%2E",
           "t%C3%A9am-a", "%EF%BD%94eam-a", "TEAM-A", "team-a%0A"]


@pytest.mark.parametrize("name", MISSING)
async def test_rotate_or_delete_a_missing_tenant_is_404(admin: Admin, name: str) -> None:
    problem(await admin.send("POST", f"/tenants/{name}/rotate"), 404)
    problem(await admin.send("DELETE", f"/tenants/{name}"), 404)
    problem(await admin.send("DELETE", f"/tenants/{name}?force=true"), 404)
    problem(await admin.send("POST", f"/certificates/{name}/rotate", json={}), 404)


@pytest.mark.parametrize("name", ["..%2Fteam-a", "team-a%2Frotate", "team-a%2F", "%2Fteam-a"])
async def test_an_encoded_slash_never_reaches_another_tenant(admin: Admin, name: str) -> None:
    """``%2F`` decodes to another path: no such route (404/405), or for a trailing one
    Starlette's redirect to the path without it (307, not followed), never team-a's."""
    before = await _row(admin, "team-a")
    for method, path in (("POST", f"/tenants/{name}/rotate"), ("DELETE", f"/tenants/{name}"),
                         ("DELETE", f"/tenants/{name}?force=true")):
        res = await admin.send(method, path)
        assert res.status_code in (307, 404, 405), (method, path, res.text)
        assert res.status_code == 307 or res.headers["content-type"].startswith(PROBLEM)
    assert await _row(admin, "team-a") == before


async def _row(admin: Admin, name: str) -> dict[str, Any] | None:
    rows = (await admin.send("GET", "/tenants")).json()["tenants"]
    return next((t for t in rows if t["name"] == name), None)


WRONG_METHODS = [("PUT", "/tenants"), ("DELETE", "/tenants"), ("PATCH", "/tenants"),
                 ("GET", "/tenants/team-a/rotate"), ("PUT", "/tenants/team-a"),
                 ("GET", "/tenants/team-a"), ("POST", "/tenants/team-a"),
                 ("GET", "/certificates/web/rotate"), ("POST", "/inventory"),
                 ("DELETE", "/inventory")]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_wrong_method_is_a_problem(admin: Admin, method: str, path: str) -> None:
    res = await admin.send(method, path)
    problem(res, 405)
    problem(await admin.send(method, path, auth=None), 405)


@pytest.mark.parametrize("path", ["/", "/nothing", "/tenants/a/b", "/tenants/a/rotate/x",
                                  "/certificates/web", "/inventory/x", "/../directory"])
async def test_unknown_admin_paths_are_404(admin: Admin, path: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        res = await admin.send(method, path)
        if path == "/../directory":  # the client removes the dot segment: not ours
            continue
        problem(res, 404)


async def test_admin_off_answers_404_to_every_method(tmp_path: Path) -> None:
    """No ``admin:`` section: the API does not exist, whatever the method (a 405 would
    tell it does)."""
    port = procs.free_port()
    cfg = base_config(tmp_path, port, issuers=[{"name": "local", "type": "local-ca"}])
    with running(tmp_path, write_config(tmp_path, cfg), port) as repo:
        async with httpx.AsyncClient(verify=repo.ssl_context(), timeout=60) as http:
            for method, path in [*ENDPOINTS, *WRONG_METHODS]:
                res = await http.request(method, f"{repo.base_url}/admin/v1{path}",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
                problem(res, 404)


# --- the credentials, force and concurrency -----------------------------------------------

async def test_keys_only_in_minting_answers(admin: Admin) -> None:
    made = await admin.send("POST", "/tenants", json={"name": "keys"})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    key = made.json()["eabHmacKey"]
    rotated = await admin.send("POST", "/tenants/keys/rotate")
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    assert rotated.json()["eabHmacKey"] != key
    for path in ("/tenants", "/inventory"):
        res = await admin.send("GET", path)
        assert res.status_code == 200
        assert key not in res.text and rotated.json()["eabHmacKey"] not in res.text
        assert "eabHmacKey" not in res.text
    again = await admin.send("POST", "/tenants", json={"name": "keys"})
    problem(again, 409)
    gone = await admin.send("DELETE", "/tenants/keys")
    assert gone.status_code == 200 and "eabHmacKey" not in gone.text


@pytest.mark.parametrize("query", ["force=maybe", "force[]=true", "force=true&force=false",
                                   "force=2", "force=on"])
async def test_unclear_force_is_malformed(admin: Admin, query: str) -> None:
    await _bound_tenant(admin, "forced")
    problem(await admin.send("DELETE", f"/tenants/forced?{query}"), 400)
    assert any(t["name"] == "forced" for t in
               (await admin.send("GET", "/tenants")).json()["tenants"])


@pytest.mark.parametrize("query", ["", "force=false", "force=0", "force=FALSE", "force="])
async def test_not_forced_keeps_a_bound_tenant(admin: Admin, query: str) -> None:
    await _bound_tenant(admin, "forced")
    res = await admin.send("DELETE", f"/tenants/forced?{query}")
    problem(res, 409, "urn:certdepot:error:tenantHasAccounts")


@pytest.mark.parametrize("query", ["force=true", "force=TRUE", "force=1", "force=True"])
async def test_forced_delete(admin: Admin, query: str) -> None:
    await _bound_tenant(admin, "forced")
    res = await admin.send("DELETE", f"/tenants/forced?{query}")
    assert res.status_code == 200, res.text
    assert res.json() == {"tenant": "forced", "accountsDeactivated": 1}


async def _bound_tenant(admin: Admin, name: str) -> None:
    """Tenant ``name`` exists with one valid account bound."""
    rows = {t["name"]: t for t in (await admin.send("GET", "/tenants")).json()["tenants"]}
    if name in rows and rows[name]["accounts"]:
        return
    made = await admin.send("POST", "/tenants", json={"name": name})
    assert made.status_code == 201, made.text
    async with AcmeClient(admin.repo.directory_url, crypto.generate_private_key(),
                          verify=str(admin.repo.ca_path)) as c:
        await c.new_account(eab=(made.json()["eabKeyId"], made.json()["eabHmacKey"]))


async def test_concurrent_create_makes_one_tenant(admin: Admin) -> None:
    answers = await asyncio.gather(*(admin.send("POST", "/tenants", json={"name": "race"})
                                     for _ in range(12)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 11, codes
    for a in answers:
        if a.status_code == 409:
            problem(a, 409)


# --- fuzz ----------------------------------------------------------------------------------

FUZZ_EXAMPLES = 150
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_bodies = (st.binary(max_size=300)
           | st.builds(lambda d: json.dumps(d).encode(), _json)
           | st.builds(lambda n: json.dumps({"name": n}).encode(), st.text(max_size=60))
           | st.builds(lambda r: json.dumps({"reason": r}).encode(), _json))
_segments = st.text(max_size=40).map(lambda t: quote(t, safe=""))
_queries = st.lists(st.tuples(st.sampled_from(["force", "stale", "x", "force[]"]),
                              st.text(max_size=10)), max_size=3)
_ctype = st.sampled_from(["application/json", "text/plain", "", "application/json; x=y",
                          "APPLICATION/JSON"])


def test_fuzzed_admin_requests_never_5xx(admin: Admin) -> None:
    """Hypothesis over every admin endpoint: a fuzzed path segment, query, content type
    and body, with the valid token. Never a 5xx; every refusal a problem document; a
    tenant is created only under a name the store accepts; no error carries a key."""
    seen: Counter[int] = Counter()
    with httpx.Client(verify=admin.repo.ssl_context(), timeout=60) as http:

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(which=st.sampled_from(ENDPOINTS), name=_segments, query=_queries,
               ctype=_ctype, body=_bodies)
        def one(which: tuple[str, str], name: str, query: list[tuple[str, str]],
                ctype: str, body: bytes) -> None:
            method, path = which
            path = path.replace("team-a", name or "x").replace("web", name or "x")
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": ctype}
            res = http.request(method, admin.url + path, params=httpx.QueryParams(query),
                               content=body,
                               headers=headers)
            seen[res.status_code] += 1
            assert res.status_code < 500, (method, path, query, body, res.text)
            if (res.status_code >= 400 and res.status_code != 405) or res.status_code == 404:
                assert res.headers["content-type"].startswith(PROBLEM), res.headers
                assert "eabHmacKey" not in res.text
            if res.status_code == 201:
                created = res.json()["tenant"]
                tenants.check_name(created)
                admin.minted.append(res.json()["eabHmacKey"])

        one()
    assert sum(seen.values()) == FUZZ_EXAMPLES and len(seen) > 2, seen


async def test_the_log_holds_no_key_and_no_traceback(admin: Admin) -> None:
    await admin.send("POST", "/tenants", json={"name": "log-check"})
    assert admin.minted, "no key was minted by the cases before"
    log = admin.repo.proc.log_path.read_text()
    for key in admin.minted:
        assert key not in log
    assert TOKEN not in log
    assert "Traceback" not in log, log[-3000:]
