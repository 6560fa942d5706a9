"""How the repository answers an upstream CA's challenges as the domain owner.

http-01: the key authorization goes into the store, and every replica's plain-HTTP
listener (http01.py) serves it. dns-01: an RFC 2136 update, signed with TSIG, to the
authoritative server of the zone.
"""

from __future__ import annotations

import asyncio
import logging
import time

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

from certdepot.acme import challenges
from certdepot.acme.messages import Challenge, Identifier
from certdepot.repository import store as tables
from certdepot.repository.config import ChallengeSolver as SolverConfig
from certdepot.repository.store import Store

log = logging.getLogger("certdepot.repository.solvers")

TOKEN_LIFETIME = 3600.0


class Http01Solver:
    challenge_type = "http-01"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def present(self, identifier: Identifier, challenge: Challenge,
                      key_authorization: str) -> None:
        token = challenge.token or ""
        if self.store.get(tables.http01_tokens, token) is None:
            self.store.insert(tables.http01_tokens, token=token,
                              key_authorization=key_authorization,
                              expires=time.time() + TOKEN_LIFETIME)

    async def cleanup(self, identifier: Identifier, challenge: Challenge,
                      key_authorization: str) -> None:
        with self.store.tx() as c:
            c.execute(tables.http01_tokens.delete().where(
                tables.http01_tokens.c.token == (challenge.token or "")))


class SolverError(Exception):
    pass


class Dns01Solver:
    challenge_type = "dns-01"

    def __init__(self, cfg: SolverConfig) -> None:
        assert cfg.server and cfg.zone
        self.cfg = cfg
        self.zone = dns.name.from_text(cfg.zone)
        self.keyring = None
        self.algorithm: dns.name.Name | None = None
        if cfg.tsig is not None:
            self.keyring = dns.tsigkeyring.from_text({cfg.tsig.name: cfg.tsig.secret})
            self.algorithm = dns.name.from_text(cfg.tsig.algorithm)

    def _update(self, name: str, value: str, add: bool) -> None:
        record = dns.name.from_text(challenges.dns01_name(name))
        if not record.is_subdomain(self.zone):
            raise SolverError(f"{record} is not inside zone {self.zone}")
        upd = dns.update.UpdateMessage(self.zone, keyring=self.keyring,
                                       keyalgorithm=self.algorithm or dns.tsig.default_algorithm)
        rel = record.relativize(self.zone)
        if add:
            upd.add(rel, 60, "TXT", f'"{value}"')
        else:
            upd.delete(rel, "TXT", f'"{value}"')
        assert self.cfg.server
        resp = dns.query.tcp(upd, self.cfg.server, port=self.cfg.port, timeout=10)
        if resp.rcode() != dns.rcode.NOERROR:
            raise SolverError(f"RFC 2136 update for {record} refused: "
                              f"{dns.rcode.to_text(resp.rcode())}")

    async def present(self, identifier: Identifier, challenge: Challenge,
                      key_authorization: str) -> None:
        value = challenges.dns01_txt_from_key_authorization(key_authorization)
        await asyncio.to_thread(self._update, identifier.value, value, True)
        if self.cfg.propagation_seconds:
            await asyncio.sleep(self.cfg.propagation_seconds)

    async def cleanup(self, identifier: Identifier, challenge: Challenge,
                      key_authorization: str) -> None:
        value = challenges.dns01_txt_from_key_authorization(key_authorization)
        try:
            await asyncio.to_thread(self._update, identifier.value, value, False)
        except (SolverError, OSError, dns.exception.DNSException) as exc:
            log.warning("dns-01 cleanup for %s failed: %s", identifier.value, exc)
