"""The ACME client's HTTP layer, A/B: client CPU per download session, httpx's own transport
against certdepot.acme's aiohttp transport, in one run against one real repository.

    python -m bench.transport_ab [--duration 6] [--rounds 3] [--concurrency 16] [--only NAME]

One repository over TLS on 127.0.0.1 (SQLite, local CA, no Kubernetes), then ``rounds``
rounds; each round measures every transport once (order reversed every other round) for
``duration`` seconds of download sessions at ``concurrency`` clients (bench.throughput's
session: newOrder, finalize, chain, wrapped key). Reported per transport: the median over
rounds of the client's CPU ms per session (this process: utime+stime), of the server's, and
of sessions/s (the last depends on the machine's load; the CPU figures much less).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench import procstat
from bench import throughput as tp
from bench.stack import CLUSTER_TENANT, Repository, Stack, managed_names
from certdepot.acme.aiohttp_transport import KEEPALIVE_EXPIRY, AiohttpTransport

Factory = Callable[[], httpx.AsyncBaseTransport]


class Wrapped(httpx.AsyncBaseTransport):
    """A transport under httpx's client, as the operator's metrics wrapper puts it there."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def transports(ca: str) -> dict[str, Factory]:
    """The contenders: httpx's transport (main's default), the aiohttp transport under
    httpx's client (a wrapper around it, as the operator's gateway has one) and the aiohttp
    transport alone, which AcmeTransport drives without httpx's client (the new default)."""
    context = ssl.create_default_context(cafile=ca)
    return {
        "httpx": lambda: httpx.AsyncHTTPTransport(
            verify=context, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)),
        "aiohttp-under-httpx": lambda: Wrapped(AiohttpTransport(context)),
        "aiohttp": lambda: AiohttpTransport(context),
    }


def wait_issued(repo: Repository, timeout: float = 120) -> None:
    """Until every managed certificate of the repository can be downloaded."""
    async def check() -> None:
        clients = await tp.make_clients(repo.directory_url, repo.ca_path, 1,
                                        repo.eab[CLUSTER_TENANT])
        deadline = time.monotonic() + timeout
        try:
            for names in managed_names(len(repo.config["certificates"])).values():
                while True:
                    try:
                        await clients[0].download_certificate(names)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.5)
        finally:
            await clients[0].aclose()
    tp.run(check())


async def compare(repo: Repository, contenders: dict[str, Factory], args: argparse.Namespace
                  ) -> dict[str, list[dict[str, Any]]]:
    """Every contender's clients made once (the tenant's EAB key binds at most 100 accounts),
    then ``rounds`` windows each, interleaved, all on one event loop."""
    names = list(managed_names(len(repo.config["certificates"])).values())
    session = tp.download_session(names)
    clients = {name: await tp.make_clients(repo.directory_url, repo.ca_path, args.concurrency,
                                           repo.eab[CLUSTER_TENANT], factory)
               for name, factory in contenders.items()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    try:
        for group in clients.values():  # warm-up: connections, the server's caches
            await asyncio.gather(*(session(c, i) for i, c in enumerate(group)))
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                server0, own0 = procstat.cpu_seconds(repo.pid), time.process_time()
                latencies, errors, elapsed = await tp._load(clients[name], session,
                                                            args.duration)
                done = max(1, len(latencies))
                result = {
                    "client_cpu_ms_per_session": (time.process_time() - own0) / done * 1000,
                    "server_cpu_ms_per_session":
                        (procstat.cpu_seconds(repo.pid) - server0) / done * 1000,
                    "sessions_per_s": len(latencies) / elapsed,
                    "errors": sum(errors.values()),
                }
                runs[name].append(result)
                print(f"round {r + 1} {name:20} client "
                      f"{result['client_cpu_ms_per_session']:.2f} ms/session, server "
                      f"{result['server_cpu_ms_per_session']:.2f} ms/session, "
                      f"{result['sessions_per_s']:.1f}/s, errors {result['errors']}",
                      file=sys.stderr)
    finally:
        await asyncio.gather(*(c.aclose() for group in clients.values() for c in group))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--only", help="measure this transport alone (e.g. under py-spy)")
    args = p.parse_args(argv)
    stack = Stack(lambda s: print(s, file=sys.stderr))
    try:
        repo = stack.repository("ab", certificates=10)
        wait_issued(repo)
        contenders = transports(str(repo.ca_path))
        if args.only:
            contenders = {args.only: contenders[args.only]}
        runs = tp.run(compare(repo, contenders, args))
        summary: dict[str, Any] = {name: _median(results) for name, results in runs.items()}
        summary["load_average_end"] = list(procstat.load_average())
        print(json.dumps(summary, indent=2))
    finally:
        stack.close()
    return 0


def _median(results: list[dict[str, Any]]) -> dict[str, float]:
    def med(key: Callable[[dict[str, Any]], float]) -> float:
        return round(statistics.median(key(r) for r in results), 2)
    return {
        "client_cpu_ms_per_session": med(lambda r: r["client_cpu_ms_per_session"]),
        "server_cpu_ms_per_session": med(lambda r: r["server_cpu_ms_per_session"]),
        "sessions_per_s": med(lambda r: r["sessions_per_s"]),
        "errors": sum(r["errors"] for r in results),
    }


if __name__ == "__main__":
    sys.exit(main())
