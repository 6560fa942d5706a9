"""Hostile cases for the repository's limits and quotas (docs/operations.md, "Limits").

Two kinds, both asserting status, problem type and an unchanged store:
- ``LIMIT_CASES`` (hostile.Case, run by hostile.run_case): signed ACME requests past a
  quota or a size bound, answered by the application (with a fresh Replay-Nonce);
- ``RAW_CASES``: what only the HTTP protocol sees (header block size and time, an
  unfinished body, bytes that are not HTTP), sent on a raw TLS connection and answered by
  the protocol itself (a problem document without Replay-Nonce: minting one needs the
  store, and a client that cannot send a request has no use for one).

They need a repository configured with ``LIMITS`` (small values, so a quota is reached
with a handful of requests) and a third tenant, team-c, for the accounts-per-key quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from hostile import (
    ACME,
    WEB,
    Case,
    World,
    _csr_b64,
    check_no_secrets,
    snapshot,
    tenants_config,
)

from certdepot.acme import ari, crypto, jws
from certdepot.repository import store as tables

# headerReadTimeout/bodyReadTimeout are short so the time cases take seconds; the
# connection bound leaves room for the slowloris regression's 300 connections.
LIMITS: dict[str, Any] = {
    "headerReadTimeout": 2, "bodyReadTimeout": 2, "maxHeaderBytes": 8192,
    "connectionsPerClient": 320, "identifiersPerOrder": 5, "accountsPerEabKey": 3,
    "pendingOrdersPerAccount": 4, "maxOutstandingNonces": 1000, "maxProfileLength": 16,
    "maxReplacesLength": 100,
}


def limits_tenants() -> list[dict[str, Any]]:
    return [*tenants_config(), {"name": "team-c", "issue": ["*.c.example.test"]}]


LIMIT_CASES: list[Case] = []


def case(name: str, status: int, ptype: str,
         prepare: Callable[[World], Awaitable[Any]] | None = None
         ) -> Callable[[Callable[[World, Any], Awaitable[httpx.Response]]], None]:
    def deco(fn: Callable[[World, Any], Awaitable[httpx.Response]]) -> None:
        LIMIT_CASES.append(Case(name, status, ptype, fn, prepare))
    return deco


def _names(n: int, zone: str = "a") -> list[str]:
    return [f"q{i}.{zone}.example.test" for i in range(n)]


def _over() -> int:
    return int(LIMITS["identifiersPerOrder"]) + 1


# -- identifiers per order

@case("quota-identifiers-one-over", 400, "malformed")
async def _ids_over(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(_names(_over()))


@case("quota-identifiers-1000", 400, "malformed")
async def _ids_1000(w: World, s: Any) -> httpx.Response:
    # The reported attack: 1,000 identifiers made 10,000 authorization rows in 1.2 s.
    return await w.a.new_order(_names(1000))


@case("quota-identifiers-duplicates-count", 400, "malformed")
async def _ids_dups(w: World, s: Any) -> httpx.Response:
    # The bound is on what is sent (and parsed), not on what remains after de-duplication.
    return await w.a.new_order(["q0.a.example.test"] * _over())


@case("quota-identifiers-download", 400, "malformed")
async def _ids_download(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order([*WEB, *_names(_over())], download=True)


@case("quota-identifiers-delegation", 400, "malformed")
async def _ids_delegation(w: World, s: Any) -> httpx.Response:
    names = [f"cdn-{i}.example.test" for i in range(_over())]
    return await w.a.new_order(names, delegation=w.refs["a_deleg"])


@case("quota-identifiers-refused-before-policy", 400, "malformed")
async def _ids_policy(w: World, s: Any) -> httpx.Response:
    # Names the tenant may not have: the size bound answers first, without any lookup.
    return await w.b.new_order(_names(_over(), "a"))


# -- profile and replaces values

@case("quota-profile-one-over", 400, "malformed")
async def _profile_over(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["q0.a.example.test"],
                               profile="p" * (int(LIMITS["maxProfileLength"]) + 1))


@case("quota-profile-30kB", 400, "malformed")
async def _profile_30k(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["q0.a.example.test"], profile="p" * 30_000)


@case("quota-replaces-30kB", 400, "malformed")
async def _replaces_30k(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x1.a.example.test"], replaces="r" * 30_000)


@case("quota-replaces-not-a-string", 400, "malformed")
async def _replaces_obj(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x1.a.example.test"], replaces={"certID": "x"})


@case("quota-replaces-unknown-certid", 400, "malformed")
async def _replaces_unknown(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x1.a.example.test"],
                               replaces=f"{jws.b64encode(b'k' * 20)}.{jws.b64encode(b's' * 8)}")


@case("quota-replaces-garbage", 400, "malformed")
async def _replaces_garbage(w: World, s: Any) -> httpx.Response:
    return await w.a.new_order(["x1.a.example.test"], replaces="../../etc/passwd")


def _cert_id(der: bytes) -> str:
    from cryptography import x509

    return ari.cert_id(x509.load_der_x509_certificate(der))


@case("quota-replaces-no-shared-identifier", 400, "malformed")
async def _replaces_other_names(w: World, s: Any) -> httpx.Response:
    # Its own certificate (x1.a.example.test), for an order naming something else.
    return await w.a.new_order(["x9.a.example.test"], replaces=_cert_id(w.ders["plain_cert"]))


@case("quota-replaces-managed-certificate", 400, "malformed")
async def _replaces_managed(w: World, s: Any) -> httpx.Response:
    # The shared managed certificate is renewed by the repository, never by a client.
    return await w.a.new_order(WEB, download=True, replaces=_cert_id(w.ders["web_cert"]))


async def _b_certificate(w: World) -> str:
    if "b_cert_id" not in w.refs:
        r = await w.b.new_order(["y1.b.example.test"])
        assert r.status_code == 201, r.text
        f = await w.b.post(r.json()["finalize"], {"csr": _csr_b64(["y1.b.example.test"])})
        assert f.status_code == 200 and f.json()["status"] == "valid", f.text
        pem = (await w.b.post(f.json()["certificate"], None)).text
        w.refs["b_cert_id"] = ari.cert_id(crypto.parse_pem_chain(pem)[0])
    return w.refs["b_cert_id"]


@case("quota-replaces-other-tenants-certificate", 400, "malformed", prepare=_b_certificate)
async def _replaces_foreign(w: World, s: Any) -> httpx.Response:
    # team-a names team-b's certificate (and a name of its own): not its to replace.
    return await w.a.new_order(["y1.a.example.test"], replaces=s)


# -- open orders per account, accounts per EAB key

async def _fill_orders(w: World) -> None:
    limit = int(LIMITS["pendingOrdersPerAccount"])
    open_ = w.store.count(tables.orders, tables.orders.c.account_id == _acct_id(w.b.kid),
                          tables.orders.c.status.in_(("pending", "ready")))
    for i in range(open_, limit):
        r = await w.b.new_order([f"fill{i}.b.example.test"])
        assert r.status_code == 201, r.text


def _acct_id(kid: str | None) -> str:
    return (kid or "").rsplit("/", 1)[-1]


@case("quota-open-orders-per-account", 429, "rateLimited", prepare=_fill_orders)
async def _orders_over(w: World, s: Any) -> httpx.Response:
    return await w.b.new_order(["over.b.example.test"])


@case("quota-open-orders-delegation-too", 429, "rateLimited", prepare=_fill_orders)
async def _orders_over_deleg(w: World, s: Any) -> httpx.Response:
    return await w.b.new_order(["b-1.example.test"], delegation=w.refs["b_deleg"])


async def _fill_accounts(w: World) -> None:
    held = w.store.count(tables.accounts, tables.accounts.c.tenant == "team-c")
    for _ in range(held, int(LIMITS["accountsPerEabKey"])):
        r = await w.client().register(w.creds["team-c"])
        assert r.status_code == 201, r.text


@case("quota-accounts-per-eab-key", 429, "rateLimited", prepare=_fill_accounts)
async def _accounts_over(w: World, s: Any) -> httpx.Response:
    return await w.client().register(w.creds["team-c"])


# ---- protocol-level cases ------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ssl: ssl.SSLContext
    new_order_path: str = "/acme/new-order"


@dataclass(frozen=True)
class RawCase:
    name: str
    status: int
    ptype: str
    exchange: Callable[[Target], Awaitable[bytes]]


RAW_CASES: list[RawCase] = []


def raw_case(name: str, status: int, ptype: str = "malformed"
             ) -> Callable[[Callable[[Target], Awaitable[bytes]]], None]:
    def deco(fn: Callable[[Target], Awaitable[bytes]]) -> None:
        RAW_CASES.append(RawCase(name, status, ptype, fn))
    return deco


async def exchange(t: Target, *chunks: bytes, pause: float = 0.0) -> bytes:
    """Send ``chunks`` on a fresh TLS connection (``pause`` seconds apart, and no more once
    an answer came: a server that refused the request closes, and writing on would reset
    the connection and lose the answer), then read until the server closes."""
    reader, writer = await asyncio.open_connection(t.host, t.port, ssl=t.ssl)
    got = b""
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                got = await asyncio.wait_for(reader.read(65536), pause or 0.001)
            if got:
                break
        return got + await asyncio.wait_for(reader.read(), 15)
    except (ConnectionError, ssl.SSLError) as exc:
        raise AssertionError(f"connection broke instead of an answer: {exc!r}") from exc
    finally:
        writer.close()


def _head(t: Target, extra: str = "", length: int | None = None) -> bytes:
    cl = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST {t.new_order_path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n"
            f"Content-Type: application/jose+json\r\n{cl}{extra}").encode()


@raw_case("raw-header-block-over-bound-one-write", 431)
async def _hdr_one(t: Target) -> bytes:
    return await exchange(t, _head(t, "X-Big: " + "A" * 9000 + "\r\n\r\n"))


@raw_case("raw-header-block-many-small-headers", 431)
async def _hdr_many(t: Target) -> bytes:
    many = "".join(f"X-{i}: v\r\n" for i in range(2000))
    return await exchange(t, _head(t, many + "\r\n"))


@raw_case("raw-header-block-over-bound-trickled", 431)
async def _hdr_trickle(t: Target) -> bytes:
    piece = ("X-Pad: " + "p" * 1000 + "\r\n").encode()
    return await exchange(t, _head(t), *[piece] * 12, pause=0.02)


@raw_case("raw-url-over-bound", 431)
async def _url_long(t: Target) -> bytes:
    return await exchange(t, f"GET /directory?{'q' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n"
                          .encode())


@raw_case("raw-header-block-never-finished", 408)
async def _hdr_slow(t: Target) -> bytes:
    return await exchange(t, _head(t, "X-Slow: 1\r\n"))


@raw_case("raw-connection-never-speaks", 408)
async def _silent(t: Target) -> bytes:
    return await exchange(t)


@raw_case("raw-body-never-finished", 408)
async def _body_slow(t: Target) -> bytes:
    return await exchange(t, _head(t, "\r\n", length=60_000) + b"{" * 1000)


@raw_case("raw-body-declared-over-bound", 413)
async def _body_big(t: Target) -> bytes:
    return await exchange(t, _head(t, "Connection: close\r\n\r\n", length=10**9))


@raw_case("raw-not-http", 400)
async def _garbage(t: Target) -> bytes:
    return await exchange(t, b"\x16\x03\x01\x00\x00garbage\r\n\r\n")


@raw_case("raw-bad-chunked-encoding", 400)
async def _chunked(t: Target) -> bytes:
    return await exchange(t, _head(t, "Transfer-Encoding: chunked\r\n\r\n") + b"zz\r\n{}\r\n")


@raw_case("raw-content-length-and-chunked", 400)
async def _smuggle(t: Target) -> bytes:
    # Request smuggling's classic shape: both framings at once.
    return await exchange(t, _head(t, "Transfer-Encoding: chunked\r\n\r\n", length=4)
                          + b"0\r\n\r\n")


def parse_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), f"not an HTTP answer: {raw[:120]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def run_raw_case(w: World, t: Target, c: RawCase) -> None:
    before = snapshot(w)
    status, headers, body = parse_reply(await c.exchange(t))
    after = snapshot(w)
    assert status < 500, f"5xx: {status} {body[:200]!r}"
    assert status == c.status, f"want {c.status} {c.ptype}, got {status} {body[:200]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    doc = json.loads(body[:int(headers.get("content-length", len(body)))])
    assert doc.get("type") == ACME + c.ptype and doc.get("status") == status, doc
    check_no_secrets(w, httpx.Response(status, content=body))
    assert before[0] == after[0], "a request refused by the protocol changed the store"
    now = time.time()
    lost = {v for v, e in before[1] - after[1] if e > now + 1}
    assert not lost, "a request refused by the protocol consumed a nonce"
