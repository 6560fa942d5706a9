"""The repository's HTTP protocol (httptools) keeps h11's bound on incomplete headers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from certdepot.repository.httpproto import MAX_INCOMPLETE_HEADER_BYTES, BoundedHttpToolsProtocol


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


@pytest.fixture
async def port() -> AsyncIterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=free, lifespan="off",
                                           http=BoundedHttpToolsProtocol, log_level="error"))
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield free
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
    assert reply.startswith(b"HTTP/1.1 400"), reply[:80]


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
