"""The repository's own checks of a client's proof of control (http-01, dns-01)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dns.asyncresolver
import dns.exception
import httpx

from certdepot.acme import challenges
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import orders as order_logic
from certdepot.repository import store as tables
from certdepot.repository.processconfig import Validation
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.validation")


async def check_http01(cfg: Validation, name: str, token: str, expected: str) -> None:
    host = cfg.resolve_to or name
    url = f"http://{host}:{cfg.http_port}{challenges.http01_path(token)}"
    try:
        async with httpx.AsyncClient(timeout=cfg.timeout_seconds, follow_redirects=True,
                                     headers={"Host": name}) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        raise AcmeProblem("connection", f"fetching {name} http-01 token: "
                          f"{type(exc).__name__}") from None
    if resp.status_code != 200:
        raise AcmeProblem("unauthorized", f"http-01 token for {name}: HTTP {resp.status_code}")
    if resp.text.strip() != expected:
        raise AcmeProblem("incorrectResponse", f"http-01 token for {name} has the wrong "
                          "key authorization")


async def check_dns01(cfg: Validation, name: str, expected: str) -> None:
    resolver = dns.asyncresolver.Resolver(configure=cfg.dns_server is None)
    if cfg.dns_server is not None:
        resolver.nameservers = [cfg.dns_server]
        resolver.port = cfg.dns_port
    resolver.lifetime = cfg.timeout_seconds
    qname = challenges.dns01_name(name)
    try:
        answer = await resolver.resolve(qname, "TXT")
    except dns.exception.DNSException as exc:
        raise AcmeProblem("dns", f"no TXT record at {qname}: {type(exc).__name__}") from None
    values = {b"".join(r.strings).decode() for r in answer}
    if expected not in values:
        raise AcmeProblem("incorrectResponse", f"TXT at {qname} lacks the expected value")


async def validate(repo: Repo, authz_id: str, chall_id: str, account_jwk: dict[str, Any]
                   ) -> None:
    row = repo.store.get(tables.authzs, authz_id)
    if row is None:
        return
    chall = next(c for c in row["challenges"] if c["id"] == chall_id)
    name = row["identifier"]["value"]
    error: AcmeProblem | None = None
    try:
        if chall["type"] == "http-01":
            await check_http01(repo.config.validation, name, chall["token"],
                               challenges.key_authorization(chall["token"], account_jwk))
        else:
            await check_dns01(repo.config.validation, name,
                              challenges.dns01_txt_value(chall["token"], account_jwk))
    except AcmeProblem as exc:
        error = exc
    except (TimeoutError, OSError) as exc:
        error = AcmeProblem("connection", f"validating {name}: {type(exc).__name__}")
    await asyncio.to_thread(_record, repo, row, chall_id, error)


def _record(repo: Repo, row: dict[str, Any], chall_id: str, error: AcmeProblem | None) -> None:
    """Store the outcome (worker thread: the store blocks)."""
    chall = next(c for c in row["challenges"] if c["id"] == chall_id)
    name = row["identifier"]["value"]
    new_challenges = []
    for c in row["challenges"]:
        if c["id"] == chall_id:
            c = {**c, "status": "invalid" if error else "valid"}
            if error:
                c["error"] = error.to_json()
            else:
                c["validated"] = repo.clock()
        new_challenges.append(c)
    repo.store.update(tables.authzs, row["id"], challenges=new_challenges,
                      status="invalid" if error else "valid")
    log.info("authz %s (%s) %s by %s", row["id"], name, "invalid" if error else "valid",
             chall["type"])
    order = repo.store.get(tables.orders, row["order_id"])
    if order is not None:
        order_logic.refresh_order(repo, order)
