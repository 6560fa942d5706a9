"""uvicorn's httptools protocol with the bounds a server facing the network needs.

llhttp (httptools) and uvicorn bound neither the time a client takes to send a request nor
the size of its header block, nor how many connections one client holds: 1,500
connections each holding an unfinished 64 KB body stayed open for good (RSS 80 -> 200 MB).
Here, per connection (settings: ``limits`` in the configuration, docs/operations.md):

- the header block must be complete within ``headerReadTimeout`` of the connection's (or
  the request's) first byte, and be at most ``maxHeaderBytes`` (request line, names and
  values): 431, whether it arrives in one read or trickles in;
- the body must be complete within ``bodyReadTimeout`` of the headers;
- at most ``connectionsPerClient`` connections per client address: 429 at once.

A connection past a deadline is answered 408 if no response has started, then closed.
Every such answer is an ACME problem document (``application/problem+json``), like the
application's own; it carries no ``Replay-Nonce`` (minting one needs the store).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import http
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: h11's default ``max_incomplete_event_size``, which uvicorn applied before.
MAX_INCOMPLETE_HEADER_BYTES = 16 * 1024


@dataclass
class ClientConnections:
    """Open connections per client address, shared by every listener of one process (all
    run on one event loop, so no lock)."""

    limit: int  # 0: unbounded
    open: dict[str, int] = field(default_factory=dict)
    trim: asyncio.TimerHandle | None = None  # a pending MALLOC_TRIM

    def trim_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """After connections close, give the memory they held back (once, shortly
        after, whatever number closed)."""
        if MALLOC_TRIM is None or self.trim is not None:
            return

        def run() -> None:
            self.trim = None
            MALLOC_TRIM()

        self.trim = loop.call_later(TRIM_DELAY, run)

    def enter(self, host: str) -> bool:
        n = self.open.get(host, 0)
        if self.limit and n >= self.limit:
            return False
        self.open[host] = n + 1
        return True

    def leave(self, host: str) -> None:
        n = self.open.get(host, 0) - 1
        if n > 0:
            self.open[host] = n
        else:
            self.open.pop(host, None)


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(size: int = 128 * 1024) -> None:
    """glibc raises its mmap threshold each time an mmapped block is freed; after the
    first connection closes, every connection's 256 KB TLS read buffer (asyncio's
    sslproto) comes from the heap instead and is never given back. A fixed threshold keeps
    them mmapped: freed with the connection. (Measured: 300 slow clients left 75 MB.)"""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, size)


def _trimmer() -> Callable[[], object] | None:
    trim = getattr(_LIBC, "malloc_trim", None)
    return None if trim is None else (lambda: trim(0))


#: Gives free heap pages back to the system (glibc); None elsewhere.
MALLOC_TRIM = _trimmer()
#: At most one trim per this many seconds, after connections closed.
TRIM_DELAY = 2.0


@dataclass(frozen=True)
class ProtocolLimits:
    header_read_timeout: float = 10.0
    max_header_bytes: int = MAX_INCOMPLETE_HEADER_BYTES
    body_read_timeout: float = 30.0
    clients: ClientConnections = field(default_factory=lambda: ClientConnections(0))


def problem_bytes(status: int, ptype: str, detail: str, *,
                  headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying an ACME problem document, then close."""
    body = json.dumps({"type": f"urn:ietf:params:acme:error:{ptype}", "detail": detail,
                       "status": status}).encode()
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
             "content-type: application/problem+json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _HeaderTooLarge(Exception):
    """Raised inside a parser callback to stop parsing (httptools wraps it)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    #: Replaced per server by :func:`bounded_protocol`.
    limits = ProtocolLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # the next bytes belong to a request's header block
        self._header_bytes = 0  # received while the block was incomplete
        self._parsed_header_bytes = 0  # request line, header names and values
        self._too_large = False
        self._deadline: asyncio.TimerHandle | None = None
        self._host: str | None = None  # counted in limits.clients

    # -- connections per client ---------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if host is not None:
            if not self.limits.clients.enter(host):
                self.logger.debug("refused a connection from %s: %d open", host,
                                  self.limits.clients.open.get(host, 0))
                self._refuse(429, "rateLimited", "too many connections from this address",
                             headers={"retry-after": "10"})
                return
            self._host = host
        self._arm(self.limits.header_read_timeout)  # a connection that never speaks

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._host is not None:
            self.limits.clients.leave(self._host)
            self._host = None
        self.limits.clients.trim_soon(self.loop)
        super().connection_lost(exc)

    # -- deadlines ------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        what = "header block" if self._in_headers else "body"
        self.logger.debug("closing a connection from %s: request %s not received in time",
                          self._host, what)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            # The application waiting for the body sees a disconnect now, and whatever it
            # still sends goes nowhere (not after our answer).
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408, "malformed", f"request {what} not received in time")

    # -- header block size ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            if self._deadline is None:  # the first byte of a kept-alive request
                self._arm(self.limits.header_read_timeout)
            self._header_bytes += len(data)
        super().data_received(data)  # on_headers_complete ends the block
        if (self._in_headers and self._header_bytes > self.limits.max_header_bytes
                and not self.transport.is_closing()):
            # Still incomplete and already too large: don't wait for the rest.
            self._too_large = True
            self.send_400_response("request header block too large")

    def _count(self, n: int) -> None:
        self._parsed_header_bytes += n
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeaderTooLarge

    def on_message_begin(self) -> None:
        self._parsed_header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._arm(self.limits.body_read_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_headers = True  # keep-alive: the next request's headers follow
        self._header_bytes = 0
        self._disarm()  # the next request's clock starts with its first byte
        super().on_message_complete()

    # -- answers without the application ------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to an unparseable request, as a problem document (431 when the
        header block was too large)."""
        if self._too_large:
            self.logger.debug("request header block too large from %s", self._host)
            self._refuse(431, "malformed", "request header block too large")
        else:
            self._refuse(400, "malformed", msg)

    def _refuse(self, status: int, ptype: str, detail: str, *,
                headers: dict[str, str] | None = None) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(problem_bytes(status, ptype, detail, headers=headers))
            self.transport.close()


def bounded_protocol(limits: ProtocolLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for one process's listeners, with its limits (uvicorn takes a
    class and instantiates it per connection)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
