"""(c) Repository throughput: complete ACME sessions per second at 1, 16, 64 clients.

A *download session* is what the operator does for one CertificateDownload: newOrder with
``download: true`` (authorizations pre-granted), finalize with an ephemeral JWK, fetch the
chain, fetch and unwrap the JWE key. A *plain issuance session* is RFC 8555 with a CSR:
newOrder, (answer the challenges if any are pending), finalize, poll, fetch the chain —
the same code against the repository (local-ca, pre-authorised names) and against Pebble
(always valid, authorization reuse, no VA sleep, no nonce rejection).

Each client is its own account; the clients share this process's event loop (they are on
the same 2 cores as the server, which the report states next to the figures).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop

from bench import procstat, stats
from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient

Session = Callable[[AcmeClient, int], Awaitable[None]]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop, the loop the operator's own ACME client runs on,
    so less of the shared 2 cores goes to the client and more to the server measured."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def make_clients(directory_url: str, ca: Path | str | bool, count: int,
                       eab: tuple[str, str] | None,
                       transport: Callable[[], httpx.AsyncBaseTransport] | None = None
                       ) -> list[AcmeClient]:
    """``transport`` (a factory) replaces TCP, e.g. an in-process ASGI app in the smoke test."""
    clients = []
    for _ in range(count):
        key = crypto.generate_private_key("ec-p256")
        # Polls every 20 ms: the figure is the server's speed, not a client's patience.
        clients.append(AcmeClient(directory_url, key, verify=ca if isinstance(ca, bool)
                                  else str(ca), poll_interval=0.02,
                                  timeout=60, bad_nonce_retries=3,
                                  transport=transport() if transport else None))
    await asyncio.gather(*(c.new_account(eab=eab) for c in clients))
    return clients


def download_session(names: Sequence[Sequence[str]]) -> Session:
    async def session(client: AcmeClient, i: int) -> None:
        await client.download_certificate(names[i % len(names)])
    return session


def plain_session(zone: str) -> Session:
    async def session(client: AcmeClient, i: int) -> None:
        name = f"client{id(client) % 100000}.{zone}"
        key = crypto.generate_private_key("ec-p256")
        csr = crypto.build_csr(key, [name])
        order = await client.new_order([name])
        if order.status == "pending":
            for authz in await client.authorizations(order):
                if authz.status != "pending":
                    continue
                challenge = next(c for c in authz.challenges if c.type == "http-01")
                await client.answer_challenge(challenge)
                await client.poll_authorization(authz.url or "")
        order = await client.finalize(order, csr)
        await client.fetch_certificate(order.certificate or "", alternates=False)
    return session


async def _load(clients: Sequence[AcmeClient], session: Session, duration: float
                ) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    stop_at = time.monotonic() + duration
    counter = iter(range(10**9))

    async def worker(client: AcmeClient) -> None:
        while time.monotonic() < stop_at:
            began = time.monotonic()
            try:
                await session(client, next(counter))
            except Exception as exc:  # counted, and the first few reported
                errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            latencies.append(time.monotonic() - began)

    began = time.monotonic()
    await asyncio.gather(*(worker(c) for c in clients))
    return latencies, errors, time.monotonic() - began


async def measure(directory_url: str, ca: Path | str | bool, eab: tuple[str, str] | None,
                  session: Session, concurrency: int, duration: float, repeats: int,
                  server_pid: int | None,
                  transport: Callable[[], httpx.AsyncBaseTransport] | None = None
                  ) -> dict[str, Any]:
    """``repeats`` windows of ``duration`` s at ``concurrency`` clients (after a warm-up)."""
    clients = await make_clients(directory_url, ca, concurrency, eab, transport)
    try:
        # Warm-up (connections, caches); a few clients suffice and keep 64 from waiting long.
        await asyncio.gather(*(session(c, i) for i, c in enumerate(clients[:4])))
        rates, all_latencies, errors = [], [], Counter[str]()
        server_cpu, client_cpu = 0.0, 0.0
        for _ in range(repeats):
            cpu0 = procstat.cpu_seconds(server_pid) if server_pid else 0.0
            own0 = time.process_time()
            latencies, errs, elapsed = await _load(clients, session, duration)
            server_cpu += (procstat.cpu_seconds(server_pid) - cpu0) if server_pid else 0.0
            client_cpu += time.process_time() - own0
            rates.append(len(latencies) / elapsed)
            all_latencies += latencies
            errors.update(errs)
        done = len(all_latencies)
        return {
            "concurrency": concurrency, "sessions_per_s": stats.summary(rates),
            "latency_s": stats.latency(all_latencies), "sessions": done,
            "errors": dict(errors.most_common(3)), "error_count": sum(errors.values()),
            "server_cpu_ms_per_session": round(server_cpu / done * 1000, 2) if done else None,
            "client_cpu_ms_per_session": round(client_cpu / done * 1000, 2) if done else None,
            "load_average": procstat.load_average(),
        }
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
