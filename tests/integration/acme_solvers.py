"""Challenge solvers for integration tests against Pebble: real HTTP and DNS answers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certdepot.acme import challenges, crypto
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


class TlsAlpn01Solver:
    """Answers tls-alpn-01 (RFC 8737) on 127.0.0.1:<port>: ALPN ``acme-tls/1`` and, per SNI
    name, a self-signed certificate carrying the critical acmeIdentifier extension built by
    certdepot.acme.challenges (so Pebble's validator checks that encoding)."""

    challenge_type = challenges.TLSALPN01

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.handshakes: list[str] = []
        self._server: asyncio.Server | None = None

    def _select(self, sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name in self.contexts:
            self.handshakes.append(name)
            sslobj.context = self.contexts[name]

    async def __aenter__(self) -> TlsAlpn01Solver:
        default = self._context("fallback.invalid", None)
        default.sni_callback = self._select
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=default)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The validator only needs the handshake; close once it is done.
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()

    def _context(self, name: str, extension: x509.ExtensionType | None) -> ssl.SSLContext:
        key = crypto.generate_private_key("ec-p256")
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        )
        if extension is not None:
            builder = builder.add_extension(extension, critical=True)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        cert = builder.sign(key, hashes.SHA256())
        path = self.workdir / f"tlsalpn-{secrets.token_hex(4)}.pem"
        path.write_bytes(
            crypto.private_key_to_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols([challenges.ACME_TLS_ALPN_PROTOCOL])
        try:
            context.load_cert_chain(path)
        finally:
            path.unlink()
        return context

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        extension = challenges.tlsalpn01_extension_from_key_authorization(key_authorization)
        self.contexts[identifier.value] = self._context(identifier.value, extension)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.contexts.pop(identifier.value, None)
