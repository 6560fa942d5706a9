"""Challenge solvers for integration tests against Pebble: real HTTP and DNS answers."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from certdepot.acme import challenges
from certdepot.acme.messages import Challenge, Identifier


class Http01Solver:
    """Serves ``/.well-known/acme-challenge/<token>`` on 127.0.0.1:<port> while running."""

    challenge_type = challenges.HTTP01

    def __init__(self, port: int) -> None:
        self.port = port
        self.responses: dict[str, str] = {}
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Http01Solver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = head.split(b" ", 2)[1].decode()
            self.requests.append(path)
            token = path.removeprefix(challenges.HTTP01_PREFIX)
            body = self.responses.get(token)
            if path.startswith(challenges.HTTP01_PREFIX) and body is not None:
                data = body.encode()
                status = b"200 OK"
            else:
                data, status = b"not found", b"404 Not Found"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(data)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, IndexError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        assert challenge.token
        self.responses[challenge.token] = key_authorization

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.responses.pop(challenge.token or "", None)


class Dns01Solver:
    """Sets the dns-01 TXT record through pebble-challtestsrv's management API."""

    challenge_type = challenges.DNS01

    def __init__(self, challtestsrv_url: str) -> None:
        self.url = challtestsrv_url.rstrip("/")

    async def _call(self, path: str, body: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(self.url + path, json=body)
            response.raise_for_status()

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        value = challenges.dns01_txt_from_key_authorization(key_authorization)
        host = challenges.dns01_name(identifier.value) + "."
        await self._call("/set-txt", {"host": host, "value": value})

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        await self._call("/clear-txt", {"host": challenges.dns01_name(identifier.value) + "."})
