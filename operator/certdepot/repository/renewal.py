"""Obtain managed certificates at start and renew them, on exactly one replica.

Each managed entry has its own lease in the store; the replica that holds it decides and
renews, the others keep serving what the store holds. A failing issuer is retried with
exponential backoff while the current certificate keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from certdepot.acme import ari, crypto
from certdepot.repository import certstore, leases, star, upstream_revocation
from certdepot.repository import store as tables
from certdepot.repository.config import ManagedCertificate
from certdepot.repository.issuers import IssueRequest
from certdepot.repository.issuers.imported import Imported
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.renewal")

LEASE_SECONDS = leases.LEASE_SECONDS  # short, kept alive by a heartbeat while working
MAX_BACKOFF = 3600.0


def backoff(failures: int) -> float:
    return float(min(MAX_BACKOFF, 5 * 2 ** min(failures, 12)))


async def is_due(repo: Repo, cfg: ManagedCertificate, cert: dict[str, object]) -> str | None:
    """Why ``cert`` must be renewed now, or None."""
    now = repo.clock()
    not_before, not_after = float(cert["not_before"]), float(cert["not_after"])  # type: ignore[arg-type]
    if cfg.renew_before is not None:
        before = cfg.renew_before.total_seconds()
        if before < not_after - not_before:
            return "inside renewBefore" if now >= not_after - before else None
        # A renewBefore as long as the certificate the issuer gave (a short-lived issuer, or
        # an issuer that caps the lifetime asked for) would renew on every pass: use the
        # two-thirds rule for this certificate instead, and say so once per certificate.
        _warn_renew_before(cfg, not_after - not_before)
        return _two_thirds(now, not_before, not_after)
    issuer = repo.issuers[cfg.issuer]
    try:
        window = await issuer.suggested_renewal(crypto.parse_pem_chain(
            str(cert["chain_pem"]))[0])
    except Exception as exc:
        log.info("%s: renewal info unavailable (%s)", cfg.name, type(exc).__name__)
        window = None
    if window is not None:
        # RFC 9773 §4.2: renew at a random moment inside the window, not at its start. The
        # moment is drawn from the serial, so every pass and every replica picks the same
        # one; a CA whose window opens at issuance (Pebble's ten-minute profile) then gets
        # one renewal per window instead of one per pass.
        start, end = (dt.datetime.fromtimestamp(t, dt.UTC) for t in window)
        spread = random.Random(str(cert["serial"]))  # noqa: S311 - spreading, not secrecy
        moment = ari.choose_renewal_time(start, end, spread)
        return "inside the CA's renewal window" if now >= moment.timestamp() else None
    return _two_thirds(now, not_before, not_after)


def _two_thirds(now: float, not_before: float, not_after: float) -> str | None:
    if now >= not_before + (not_after - not_before) * 2 / 3:
        return "two thirds of the lifetime passed"
    return None


_warned_renew_before: set[tuple[str, float]] = set()


def _warn_renew_before(cfg: ManagedCertificate, lifetime: float) -> None:
    key = (cfg.name, lifetime)
    if key in _warned_renew_before:
        return
    _warned_renew_before.add(key)
    log.warning("%s: renewBefore (%s) is not shorter than the certificate's lifetime (%d s); "
                "renewing at two thirds of the lifetime instead", cfg.name, cfg.renew_before,
                int(lifetime))


async def obtain(repo: Repo, cfg: ManagedCertificate, replaces: str | None) -> str:
    """Get a new certificate for ``cfg`` and make it current; returns its id."""
    key = crypto.generate_private_key(cfg.key_type)
    csr = crypto.build_csr(key, cfg.dns_names)
    chain = await repo.issuers[cfg.issuer].issue(IssueRequest(
        csr_der=csr, dns_names=list(cfg.dns_names), lifetime=cfg.lifetime,
        profile=cfg.profile, replaces=replaces or None))
    leaf = crypto.parse_pem_chain(chain)[0]
    if not crypto.public_key_matches(key, leaf):
        raise RuntimeError("issuer returned a certificate for another key")
    cert_id = await asyncio.to_thread(_save_current, repo, cfg, chain, key)
    log.info("%s: new certificate serial %s", cfg.name, crypto.serial_hex(leaf))
    return cert_id


def _save_current(repo: Repo, cfg: ManagedCertificate, chain: str,
                  key: crypto.PrivateKey) -> str:
    cert_id = certstore.save_certificate(repo.store, repo.vault, chain, issuer=cfg.issuer,
                                         now=repo.clock(), managed_name=cfg.name, key=key)
    certstore.set_current(repo.store, cfg.name, cert_id)
    return cert_id


def _load_state(repo: Repo, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    certstore.ensure_managed(repo.store, name)
    state = repo.store.get(tables.managed, name)
    assert state is not None
    return state, certstore.current_managed(repo.store, name)


async def check_one(repo: Repo, cfg: ManagedCertificate) -> None:
    """One renewal decision for one managed entry (call with its lease held).

    Store calls go through worker threads: the event loop keeps serving requests."""
    state, cur = await asyncio.to_thread(_load_state, repo, cfg.name)
    now = repo.clock()
    if state["next_attempt"] > now and not state["renew_requested"]:
        return
    issuer = repo.issuers[cfg.issuer]
    if not issuer.can_issue:
        warn = issuer.warn_before.total_seconds() if isinstance(issuer, Imported) else 14 * 86400
        if cur is not None and cur["not_after"] - now < warn:
            log.warning("%s: imported certificate expires in %.1f days; import a new one",
                        cfg.name, (cur["not_after"] - now) / 86400)
        return
    reason = "requested" if state["renew_requested"] else (
        "no certificate yet" if cur is None else
        "the current certificate is revoked" if cur["revoked"] else
        await is_due(repo, cfg, cur))
    if reason is None:
        return
    log.info("%s: obtaining a certificate (%s)", cfg.name, reason)
    try:
        await obtain(repo, cfg, cur["ari_id"] if cur else None)
    except Exception as exc:
        failures = int(state["failures"]) + 1
        delay = backoff(failures)
        log.warning("%s: issuance failed (%s: %s); retry in %.0fs", cfg.name,
                    type(exc).__name__, exc, delay)
        await asyncio.to_thread(
            repo.store.update, tables.managed, cfg.name, failures=failures,
            next_attempt=repo.clock() + delay,
            last_error=f"{type(exc).__name__}: {exc}"[:500], renew_requested=False)


async def run_once(repo: Repo) -> None:
    for cfg in repo.config.certificates:
        lease = f"renew:{cfg.name}"
        async with leases.held(repo, lease) as mine:
            if mine:
                await check_one(repo, cfg)
    await upstream_revocation.retry_upstream(repo)


def request_renewal(repo_store: tables.Store, name: str) -> bool:
    certstore.ensure_managed(repo_store, name)
    return repo_store.update(tables.managed, name, renew_requested=True)


def start(repo: Repo) -> Callable[[], Awaitable[None]]:
    """Start the loop; returns an async function that stops it."""
    async def loop() -> None:
        while True:
            try:
                await run_once(repo)
                await star.run_once(repo)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewal pass failed")
            # A new configuration (livereload.py) wakes the loop before the interval ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(repo.config_changed.wait(),
                                       repo.config.renew_check_interval.total_seconds())
            repo.config_changed.clear()

    task = asyncio.get_running_loop().create_task(loop(), name="renewal")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
