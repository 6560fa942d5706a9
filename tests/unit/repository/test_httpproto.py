"""The repository's HTTP protocol (httptools): h11's bound on incomplete headers, and the
configured bounds on header and body time and size and on connections per client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from certdepot.repository.httpproto import (
    MAX_INCOMPLETE_HEADER_BYTES,
    BoundedHttpToolsProtocol,
    ClientConnections,
    ProtocolLimits,
    bounded_protocol,
)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _serving(proto: type[BoundedHttpToolsProtocol]) -> AsyncIterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=free, lifespan="off",
                                           http=proto, log_level="error"))
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield free
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with _serving(BoundedHttpToolsProtocol) as free:
        yield free


TIGHT = ProtocolLimits(header_read_timeout=0.3, max_header_bytes=4096, body_read_timeout=0.3,
                       clients=ClientConnections(3))


@pytest.fixture
async def tight() -> AsyncIterator[int]:
    async with _serving(bounded_protocol(TIGHT)) as free:
        yield free


async def _exchange(port: int, *chunks: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)  # separate reads on the server
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_an_endless_header_block_is_refused(port: int) -> None:
    piece = b"X-Big: " + b"A" * 4000 + b"\r\n"
    chunks = [b"GET / HTTP/1.1\r\nHost: x\r\n"] + [piece] * (
        MAX_INCOMPLETE_HEADER_BYTES // len(piece) + 2)
    reply = await _exchange(port, *chunks)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert b"application/problem+json" in reply and b"acme:error:malformed" in reply


async def test_a_large_body_with_its_headers_in_one_write_is_fine(port: int) -> None:
    body = b"b" * (4 * MAX_INCOMPLETE_HEADER_BYTES)
    reply = await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
    assert reply.endswith(str(len(body)).encode())


async def test_keep_alive_requests_each_get_a_fresh_bound(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        header = b"X-Pad: " + b"p" * (MAX_INCOMPLETE_HEADER_BYTES // 2) + b"\r\n"
        for _ in range(3):  # together far above the bound, each below it
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 5)
            assert status.startswith(b"HTTP/1.1 200"), status
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await reader.readexactly(1)  # body "0"
    finally:
        writer.close()


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


async def test_a_header_block_over_the_bound_in_one_read_is_431(tight: int) -> None:
    reply = await _exchange(tight, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
                            + b"A" * 5000 + b"\r\n\r\n")
    assert _status(reply) == 431, reply[:80]


async def test_a_silent_connection_is_closed_after_the_header_deadline(tight: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)
    started = asyncio.get_running_loop().time()
    reply = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed
    elapsed = asyncio.get_running_loop().time() - started
    writer.close()
    assert _status(reply) == 408 and b"acme:error:malformed" in reply, reply[:120]
    assert 0.25 <= elapsed < 2, elapsed


async def test_a_trickled_header_block_is_cut_at_the_deadline(tight: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)
    writer.write(b"GET / HTTP/1.1\r\n")
    reply = b""
    for _ in range(30):  # a byte every 0.1 s would keep an idle timer alive for ever
        with contextlib.suppress(TimeoutError):
            reply = await asyncio.wait_for(reader.read(4096), 0.1)
            break
        writer.write(b"X")
    writer.close()
    assert _status(reply) == 408, reply[:80]


async def test_an_unfinished_body_is_cut_at_the_deadline(tight: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n"
                 + b"b" * 1000)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert _status(reply) == 408 and b"body" in reply, reply[:200]


async def test_connections_per_client_are_bounded_and_freed(tight: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", tight) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert _status(reply) == 429 and b"rateLimited" in reply, reply[:120]
    for _, w in held:
        w.close()
    await asyncio.sleep(0.1)  # the server sees the closes
    reply = await _exchange(tight, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(reply) == 200, reply[:80]
