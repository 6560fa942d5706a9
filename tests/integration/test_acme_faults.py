"""AcmeClient against a misbehaving server on 127.0.0.1 (real TCP, real HTTP).

A server that answers 500 without a problem document, one that never answers, one that
drops the connection, one that sends a problem with Retry-After: each must surface as a
clear AcmeProblem (or a typed TransportError) naming the URL, promptly, never a KeyError or a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient, AcmeClientError
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import ConnectError, ProtocolError, Timeout, TransportError

Handler = Callable[[str, str], Awaitable[tuple[int, dict[str, str], bytes] | None]]


@contextlib.asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1; ``handler(method, path)`` returns the response, or
    None to drop the connection. Yields the base URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.split(b" ", 2)[:2]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            answer = await handler(method.decode(), path.decode())
            if answer is None:
                return
            status, headers, body = answer
            lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


E = TypeVar("E", bound=Exception)


async def directory_failure(handler: Handler, expected: type[E]) -> tuple[str, E]:
    """Ask ``handler``'s server for the directory; returns its base URL and the error."""
    async with (
        tiny_server(handler) as base,
        AcmeClient(f"{base}/dir", crypto.generate_private_key(), timeout=5) as acme,
    ):
        with pytest.raises(expected) as exc:
            await acme.directory()
    return base, exc.value


def directory_for(base: str) -> bytes:
    return json.dumps(
        {"newNonce": f"{base}/nonce", "newAccount": f"{base}/acct", "newOrder": f"{base}/order"}
    ).encode()


async def test_500_without_problem_document() -> None:
    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        if path == "/dir":
            return 200, {"Content-Type": "application/json"}, directory_for(base)
        if path == "/nonce":
            return 200, {"Replay-Nonce": "abc"}, b""
        return 500, {"Content-Type": "text/html"}, b"<h1>Internal Server Error</h1>"

    async with (
        tiny_server(handler) as base,
        AcmeClient(f"{base}/dir", crypto.generate_private_key(), timeout=5) as acme,
    ):
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account()
    assert exc.value.short_type == "serverInternal" and exc.value.status == 500
    assert f"{base}/acct" in exc.value.detail and "Internal Server Error" in exc.value.detail


async def test_problem_document_with_status_is_raised_as_is() -> None:
    problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"}

    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        if path == "/dir":
            return 200, {"Content-Type": "application/json"}, directory_for(base)
        if path == "/nonce":
            return 200, {"Replay-Nonce": "abc"}, b""
        headers = {
            "Content-Type": "application/problem+json",
            "Retry-After": "30",
            "Replay-Nonce": "n2",
        }
        return 429, headers, json.dumps(problem).encode()

    async with (
        tiny_server(handler) as base,
        AcmeClient(f"{base}/dir", crypto.generate_private_key(), timeout=5) as acme,
    ):
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account()
    assert exc.value.short_type == "rateLimited" and exc.value.status == 429
    assert exc.value.detail == "slow down" and exc.value.retry_after == 30
    assert "retry_after" not in exc.value.to_json()


async def test_server_that_never_answers_times_out_naming_the_url() -> None:
    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        if path == "/dir":
            return 200, {"Content-Type": "application/json"}, directory_for(base)
        await asyncio.sleep(30)
        return None

    async with (
        tiny_server(handler) as base,
        AcmeClient(f"{base}/dir", crypto.generate_private_key(), timeout=0.5) as acme,
    ):
        started = time.monotonic()
        with pytest.raises(Timeout) as exc:
            await acme.new_account()
        elapsed = time.monotonic() - started
    assert f"{base}/nonce" in str(exc.value) and "timed out" in str(exc.value)
    assert elapsed < 5, elapsed


async def test_dropped_connection_is_a_connection_error_naming_the_url() -> None:
    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        return None

    base, error = await directory_failure(handler, TransportError)
    assert isinstance(error, ConnectError | ProtocolError) and f"{base}/dir" in error.message
    assert isinstance(error.__cause__, httpx.TransportError)  # chained, not dropped


async def test_directory_that_is_not_acme_is_malformed() -> None:
    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        return 200, {"Content-Type": "application/json"}, b'{"hello": "world"}'

    _, error = await directory_failure(handler, AcmeProblem)
    assert error.short_type == "malformed" and "newNonce" in error.detail


async def test_non_json_success_is_a_bad_response() -> None:
    async def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        return 200, {"Content-Type": "text/html"}, b"<html>captive portal</html>"

    base, error = await directory_failure(handler, AcmeClientError)
    assert error.short_type.endswith("badResponse") and f"{base}/dir" in error.detail


async def test_trickling_server_is_bounded_by_the_request_timeout() -> None:
    """Each byte arrives well within httpx's read timeout, the whole answer never does."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/dir"
    try:
        async with AcmeClient(url, crypto.generate_private_key(), timeout=0.8) as acme:
            started = time.monotonic()
            with pytest.raises(Timeout, match=url):
                await acme.directory()
            assert time.monotonic() - started < 3
    finally:
        server.close()
