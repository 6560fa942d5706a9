"""Property tests of the input classes (issue 15) against the repository app in process,
where a class is a space rather than a point: random names, random base64url junk, random
mutations of the ephemeral JWK. Each example asserts the status, the problem type and,
through hostile.check_store, that the rejected request changed nothing in the store."""

from __future__ import annotations

import json
import string
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hostile import (
    World,
    _ready_download,
    _sent_nonces,
    b64j,
    build_world,
    certificates_config,
    check_no_secrets,
    check_problem,
    check_store,
    fresh_nonce,
    snapshot,
    tenants_config,
)
from hostile_input import kid_header, post_raw, signed_text
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from repository_testkit import BASE, make_config

from certdepot.acme import dnsname, jws, keywrap
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import policy, renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.tenants import create_tenant

SOME = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    repo = build_repo(make_config(tenants=tenants_config(), certificates=certificates_config()))
    await renewal.run_once(repo)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(repo)),
                             base_url=BASE)
    creds = {t.name: create_tenant(repo.store, repo.vault, t.name) for t in repo.config.tenants}
    w = await build_world(http, BASE, repo.store, creds)
    w.tenant = repo.config.tenant("team-a")  # type: ignore[attr-defined]
    yield w
    await http.aclose()
    for t in list(repo.tasks):
        t.cancel()
    repo.store.close()


async def _refused(w: World, send: Any, status: int, ptype: str, *, keep: str | None = None
                   ) -> None:
    before = snapshot(w)
    r: httpx.Response = await send()
    after = snapshot(w)
    check_problem(r, status, ptype)
    check_no_secrets(w, r)
    sent = _sent_nonces(r)
    check_store(w, before, after, r, may_burn=set() if keep else sent, must_keep=keep)


# ---- random names: anything team-a may not have is rejectedIdentifier --------------------

label_chars = string.ascii_letters + string.digits + "-_*.\u212a\u00fc\u0131\u200d \x00"
names = (st.text(alphabet=label_chars, max_size=40)
         | st.lists(st.text(alphabet=label_chars, max_size=8), max_size=4)
         .map(lambda ls: ".".join([*ls, "a.example.test"]))
         | st.text(max_size=30))


def _grantable(tenant: Any, value: str) -> bool:
    try:
        return policy.may_issue(tenant, dnsname.normalize(value))
    except dnsname.InvalidName:
        return False


@SOME
@given(value=names)
async def test_random_names_are_rejected_identifiers(world: World, value: str) -> None:
    assume(not _grantable(world.tenant, value))  # type: ignore[attr-defined]
    await _refused(world, lambda: world.a.new_order([value]), 400, "rejectedIdentifier")


@SOME
@given(value=names)
async def test_random_names_in_a_delegation_are_rejected_identifiers(world: World,
                                                                    value: str) -> None:
    assume(not any(policy.name_matches(value, p) for p in ("cdn-*.example.test",)))
    await _refused(world, lambda: world.a.new_order([value], delegation=world.refs["a_deleg"]),
                   400, "rejectedIdentifier")


# ---- random base64url junk in any JWS member: malformed, and the nonce is not burnt ------

junk = st.text(alphabet=string.ascii_letters + string.digits + "-_=+/ .\n~%", min_size=1,
               max_size=60)


def _non_canonical(text: str) -> bool:
    try:
        jws.b64decode(text)
    except ValueError:
        return True
    return False


@SOME
@given(member=st.sampled_from(["protected", "payload", "signature"]), text=junk,
       where=st.sampled_from(["replace", "append", "prepend"]))
async def test_random_base64_junk_is_malformed(world: World, member: str, text: str,
                                               where: str) -> None:
    url = world.refs["new_order"]
    header = await kid_header(world, url)
    doc = signed_text(b64j(header), b64j({"identifiers": [
        {"type": "dns", "value": "x7.a.example.test"}]}), world.a.key)
    doc[member] = {"replace": text, "append": doc[member] + text,
                   "prepend": text + doc[member]}[where]
    assume(_non_canonical(doc[member]))
    await _refused(world, lambda: post_raw(world, url, json.dumps(doc)), 400, "malformed",
                   keep=header["nonce"])


# ---- random mutations of the ephemeral JWK: badPublicKey at finalize, store unchanged ----

bad_values = st.sampled_from([None, 0, "", "sig", "enc", ["sign"], ["deriveKey", "sign"], [],
                              "AA", "AA==", "P-256", "X25519", "EC", "OKP", "RSA", {"x": 1},
                              "A" * 43, "_" * 43, "A" * 86, True])
mutation = st.tuples(st.sampled_from(["kty", "crv", "x", "y", "use", "key_ops", "alg", "d"]),
                     bad_values | st.just(KeyError))


@SOME
@given(curve=st.sampled_from(["P-256", "P-384", "X25519"]),
       mutations=st.lists(mutation, min_size=1, max_size=3))
async def test_random_ephemeral_jwk_mutations_are_bad_public_keys(
        world: World, curve: str, mutations: list[tuple[str, Any]]) -> None:
    jwk: dict[str, Any] = dict(keywrap.generate_ephemeral(curve)[1])
    for member, value in mutations:
        if value is KeyError:
            jwk.pop(member, None)
        else:
            jwk[member] = value
    try:
        keywrap.validate_ephemeral_jwk(jwk)
        assume(False)  # still an acceptable key (e.g. use: enc): not this property's case
    except AcmeProblem:
        pass
    finalize = await _ready_download(world)
    await _refused(world, lambda: world.a.post(finalize, {"ephemeral-jwk": jwk}), 400,
                   "badPublicKey")


async def test_fresh_nonce_still_usable_after_the_properties(world: World) -> None:
    """The properties above leave the world usable: a legitimate request still works."""
    r = await world.a.post(world.refs["a_acct"], None, nonce=await fresh_nonce(world))
    assert r.status_code == 200, r.text
