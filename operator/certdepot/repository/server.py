"""``certdepot repository serve``: the ASGI app on its listeners, with renewal running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import uvicorn

from certdepot.repository import listener_tls, workers
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.config import Config, ConfigError
from certdepot.repository.http01 import create_http01_app
from certdepot.repository.httpproto import (
    BoundedHttpToolsProtocol,
    ClientConnections,
    ProtocolLimits,
    bounded_protocol,
    fix_mmap_threshold,
)

log = logging.getLogger("certdepot.repository.server")


def http_protocol(config: Config) -> type[BoundedHttpToolsProtocol]:
    """uvicorn's HTTP/1.1 parser in C (llhttp) instead of h11 in pure Python: h11's parsing
    and its event objects were a visible share of the repository's per-request CPU. With
    the configured bounds on header and body time and size and on connections per client
    (see httpproto), shared by all listeners."""
    lim = config.limits
    return bounded_protocol(ProtocolLimits(
        header_read_timeout=lim.header_read_timeout.total_seconds(),
        max_header_bytes=lim.max_header_bytes,
        body_read_timeout=lim.body_read_timeout.total_seconds(),
        clients=ClientConnections(lim.connections_per_client)))


class _Server(uvicorn.Server):
    # Signals are handled once for all listeners in serve(), not per uvicorn server.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def split_address(address: str, key: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{key}: {address!r} is not host:port")
    return host.strip("[]"), int(port)


async def serve(config: Config, log_level: str = "info", *, reuse_port: bool = False) -> None:
    """``reuse_port``: one of several workers (workers.py), each binding every listener."""
    repo = build_repo(config)
    app = create_app(repo, run_background=True)
    servers: list[uvicorn.Server] = []
    proto = http_protocol(config)
    fix_mmap_threshold()
    lifespan: Literal["on", "off"] = "on"
    with tempfile.TemporaryDirectory(prefix="certdepot-tls-") as tmp:
        ls = config.listeners
        if ls.https is not None:
            host, port = split_address(ls.https.address, "listeners.https.address")
            if ls.https.self_signed:
                pair = listener_tls.certificate(repo.store, repo.vault, ls.https,
                                                [host, urlsplit(config.base_url).hostname or ""])
                cert, key = listener_tls.write_files(Path(tmp), pair,
                                                     ls.https.self_signed_cert_file)
            elif ls.https.cert and ls.https.key:
                cert, key = ls.https.cert, ls.https.key
            else:
                raise ConfigError("listeners.https: give cert and key, or selfSigned: true")
            servers.append(_Server(uvicorn.Config(
                app, host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                lifespan=lifespan, log_level=log_level, access_log=False, http=proto)))
            lifespan = "off"
        if ls.http is not None:
            host, port = split_address(ls.http.address, "listeners.http.address")
            servers.append(_Server(uvicorn.Config(app, host=host, port=port,
                                                  lifespan=lifespan, log_level=log_level,
                                                  access_log=False, http=proto)))
        if ls.http01 is not None:
            host, port = split_address(ls.http01.address, "listeners.http01.address")
            servers.append(_Server(uvicorn.Config(create_http01_app(repo.store), host=host,
                                                  port=port, lifespan="off",
                                                  log_level=log_level, access_log=False,
                                                  http=proto)))
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for s in servers:
                s.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        log.info("repository %s serving %s (replica %s)", config.base_url,
                 ", ".join(f"{s.config.host}:{s.config.port}" for s in servers),
                 repo.replica_id)
        try:
            await asyncio.gather(*(
                s.serve([workers.reuse_port_socket(s.config.host, s.config.port)]
                        if reuse_port else None) for s in servers))
        finally:
            for issuer in repo.issuers.values():
                await issuer.close()
            repo.store.close()
