"""The ACME client's aiohttp transport against real sockets on 127.0.0.1 (TLS from a test CA):
verification, the deadline on a trickling server, keep-alive and its expiry, the retry on a
kept-alive connection the server closed, and failures typed as httpx's transport raised them,
both when AcmeTransport drives it directly and under an httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from certdepot.acme import crypto
from certdepot.acme.aiohttp_transport import AiohttpTransport
from certdepot.acme.client import AcmeClient, transport_error
from certdepot.acme.transport_errors import ConnectError, Timeout, TlsError
from certdepot.testenv.pki import TestCA

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    url: str
    ca_file: Path
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def tls_server(tmp_path: Path, handler: Handler) -> AsyncIterator[Server]:
    """A TLS server on 127.0.0.1 with a certificate from a fresh test CA."""
    ca = TestCA.create(tmp_path, "transport-test-ca")
    cert, key = ca.issue(tmp_path, "server", "127.0.0.1", ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = Server("", ca.cert_path)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await handler(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0, ssl=context)
    state.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/dir"
    try:
        yield state
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader, state: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    state.requests.append(head + body)
    return head + body


def directory(state: Server) -> bytes:
    # Every URL on the test server itself: the client never resolves another name.
    base = state.url.rsplit("/", 1)[0]
    return (f'{{"newNonce": "{base}/n", "newAccount": "{base}/a", '
            f'"newOrder": "{base}/o"}}').encode()


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nReplay-Nonce: n1\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def answer_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     state: Server) -> None:
    request = await read_request(reader, state)
    whole = answer(directory(state))
    if request.startswith(b"HEAD "):  # the head of the same answer, no body
        whole = whole[: whole.index(b"\r\n\r\n") + 4]
    writer.write(whole)
    await writer.drain()


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: Server) -> None:
    while True:
        await answer_one(reader, writer, state)


def client(url: str, verify: bool | str | ssl.SSLContext, timeout: float = 15.0) -> AcmeClient:
    return AcmeClient(url, crypto.generate_private_key(), verify=verify, timeout=timeout)


async def test_verifies_with_a_ca_file_or_context_and_reuses_the_connection(
    tmp_path: Path,
) -> None:
    async with tls_server(tmp_path, keep_answering) as server:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        for verify in (str(server.ca_file), context):
            async with client(server.url, verify) as acme:
                assert (await acme.directory()).new_order == server.url[:-3] + "o"
                assert await acme.new_nonce() == "n1"
                assert (await acme.get(server.url)).headers["replay-nonce"] == "n1"
        # Three requests per client, one connection each: keep-alive works.
        assert server.connections == 2 and len(server.requests) == 6
        assert b"user-agent: certdepot-acme/" in server.requests[0].lower()


async def test_an_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    other = TestCA.create(tmp_path / "other", "another-ca")
    async with (
        tls_server(tmp_path, keep_answering) as server,
        client(server.url, str(other.cert_path), timeout=5) as acme,
    ):
        with pytest.raises(TlsError, match=server.url) as exc:
            await acme.directory()
    assert isinstance(exc.value.__cause__, httpx.ConnectError)
    assert server.requests == []


async def test_a_trickling_answer_is_cut_at_the_deadline(tmp_path: Path) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      state: Server) -> None:
        await read_request(reader, state)
        # Every byte well within any per-read timeout; the whole answer never arrives.
        for byte in answer(directory(state)):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    async with (
        tls_server(tmp_path, trickle) as server,
        client(server.url, str(server.ca_file), timeout=0.6) as acme,
    ):
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"timed out after 0\.6s"):
            await acme.directory()
        assert 0.5 < time.monotonic() - started < 3


async def test_a_kept_alive_connection_closed_by_the_server_is_retried_once(
    tmp_path: Path,
) -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          state: Server) -> None:
        # Answers one request per connection, then hangs up on the next one unanswered,
        # as a server whose keep-alive timeout raced the client's reuse.
        await answer_one(reader, writer, state)
        await read_request(reader, state)

    async with tls_server(tmp_path, answer_once) as server:
        async with client(server.url, str(server.ca_file), timeout=5) as acme:
            await acme.directory()
            assert await acme.new_nonce() == "n1"  # sent on the kept-alive connection first
            assert acme.reconnects == 1
        assert server.connections == 2 and len(server.requests) == 3


async def test_an_idle_connection_expires_before_the_servers_keep_alive(
    tmp_path: Path,
) -> None:
    async with tls_server(tmp_path, keep_answering) as server:
        transport = AiohttpTransport(str(server.ca_file), keepalive_expiry=0.2)
        async with AcmeClient(server.url, crypto.generate_private_key(),
                              transport=transport) as acme:
            await acme.get(server.url)
            await acme.get(server.url)
            assert server.connections == 1
            await asyncio.sleep(0.6)
            await acme.get(server.url)
            assert server.connections == 2 and acme.reconnects == 0


async def test_links_and_content_encoding_reach_the_httpx_response(tmp_path: Path) -> None:
    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      state: Server) -> None:
        await read_request(reader, state)
        links = b"Link: <https://x/1>;rel=up\r\nLink: <https://x/2>;rel=alternate\r\n"
        writer.write(answer(gzip.compress(directory(state)),
                            b"Content-Encoding: gzip\r\n" + links))
        await writer.drain()

    async with (
        tls_server(tmp_path, gzipped) as server,
        client(server.url, str(server.ca_file)) as acme,
    ):
        response = await acme.get(server.url)
    assert response.json()["newOrder"] == server.url[:-3] + "o"
    assert response.headers.get_list("link") == ["<https://x/1>;rel=up",
                                                 "<https://x/2>;rel=alternate"]
    assert str(response.request.url) == server.url


async def test_under_an_httpx_client_bodies_pass_and_failures_keep_httpx_types(
    tmp_path: Path,
) -> None:
    async with tls_server(tmp_path, keep_answering) as server:
        transport = AiohttpTransport(str(server.ca_file))
        async with httpx.AsyncClient(transport=transport, timeout=5) as http:
            response = await http.post(server.url, json={"a": 1}, headers={"X-Test": "1"})
            assert response.json()["newNonce"] == server.url[:-3] + "n"
            sent = server.requests[-1]
            assert json.loads(sent.split(b"\r\n\r\n", 1)[1]) == {"a": 1}
            assert b"x-test: 1" in sent.lower()
            assert sent.lower().count(b"content-length:") == 1
        untrusted = AiohttpTransport(True)
        async with httpx.AsyncClient(transport=untrusted, timeout=5) as http:
            with pytest.raises(httpx.ConnectError) as exc:
                await http.get(server.url)
    assert type(transport_error("GET", server.url, exc.value)) is TlsError
    refused = await _closed_port()
    async with httpx.AsyncClient(transport=AiohttpTransport(True), timeout=5) as http:
        with pytest.raises(httpx.ConnectError) as refusal:
            await http.get(refused)
    assert type(transport_error("GET", refused, refusal.value)) is ConnectError


async def _closed_port() -> str:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    return f"http://127.0.0.1:{port}/dir"


async def test_a_subclass_of_send_sees_every_request_the_client_makes(tmp_path: Path) -> None:
    # The operator's gateway measures requests and adds consumer headers this way.
    seen: list[tuple[str, int]] = []

    class Counting(AiohttpTransport):
        async def send(self, method: str, url: str, headers: Mapping[str, str],
                       content: bytes | None = None, *,
                       io_timeout: float | None = None) -> httpx.Response:
            headers = {**headers, "Certdepot-Cluster": "c1"}
            response = await super().send(method, url, headers, content,
                                          io_timeout=io_timeout)
            seen.append((method, response.status_code))
            return response

    async with tls_server(tmp_path, keep_answering) as server:
        transport = Counting(str(server.ca_file))
        async with AcmeClient(server.url, crypto.generate_private_key(),
                              transport=transport) as acme:
            await acme.directory()
            await acme.new_nonce()
    assert seen == [("GET", 200), ("HEAD", 200)]
    assert all(b"certdepot-cluster: c1" in r.lower() for r in server.requests)
    assert len(server.requests) == 2


async def test_verify_true_trusts_ssl_cert_file_as_httpx_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tls_server(tmp_path, keep_answering) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        async with client(server.url, True) as acme:
            assert (await acme.get(server.url)).status_code == 200
        monkeypatch.delenv("SSL_CERT_FILE")
        async with client(server.url, True, timeout=5) as acme:  # certifi's bundle
            with pytest.raises(TlsError):
                await acme.get(server.url)


async def test_the_default_transport_uses_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.append(head.split(b"\r\n", 1)[0])
        body = (b'{"newNonce": "http://acme.invalid/n", "newAccount": "http://acme.invalid/a",'
                b' "newOrder": "http://acme.invalid/o"}')
        writer.write(answer(body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        # acme.invalid is never resolved: the request goes to the proxy, in absolute form.
        async with AcmeClient("http://acme.invalid/dir", crypto.generate_private_key(),
                              timeout=5) as acme:
            assert (await acme.directory()).new_order == "http://acme.invalid/o"
        assert lines == [b"GET http://acme.invalid/dir HTTP/1.1"]
        monkeypatch.setenv("NO_PROXY", "acme.invalid")
        transport = AiohttpTransport(True, trust_env=True)
        assert transport._proxy("http://acme.invalid/dir") is None
        assert AiohttpTransport(True)._proxy("http://other.invalid/") is None
    finally:
        server.close()
