"""An httpx transport over aiohttp: the ACME client's HTTP connections, at less CPU.

``AcmeTransport`` speaks httpx (``httpx.Request`` in, ``httpx.Response`` out) so tests can
put ``httpx.ASGITransport`` under it; this module is what it uses for real sockets. httpx's
own transport (httpcore + h11 + anyio) cost the operator more CPU than the ACME work it
carried (docs/performance.md, "Where the time goes"); aiohttp parses HTTP in C and runs on
asyncio directly, without anyio's locks and streams.

What it keeps of httpx's transport, so the layer above sees no difference:

- TLS verified with the given ``ssl.SSLContext`` (or a CA file, or ``True``: httpx's own
  default, certifi's bundle or ``SSL_CERT_FILE``);
- with ``trust_env``, the proxy from ``HTTP(S)_PROXY`` (what an httpx client of its own used);
- the request's httpx timeouts (connect, read, pool) become aiohttp's; the caller's outer
  deadline (``AcmeTransport``) still bounds a server trickling its answer;
- keep-alive with an idle expiry (``keepalive_expiry``) shorter than the server's;
- failures raised as the httpx exceptions ``transport.transport_error`` classifies:
  ``ConnectError`` (refused, reset; a TLS failure chained from the ``ssl`` error),
  ``RemoteProtocolError`` (the server hung up or sent what is not HTTP), ``ConnectTimeout`` /
  ``ReadTimeout`` / ``PoolTimeout``. ``RemoteProtocolError`` on a reused connection is what
  ``AcmeTransport`` retries once.

The aiohttp session is created on first use, inside the running event loop (aiohttp binds
it to the loop), and closed by ``aclose``. Bodies are read whole: ACME messages are small,
and the caller reads every one anyway.
"""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import httpx

Verify = bool | str | Path | ssl.SSLContext

#: Dropped after this long idle: well before uvicorn's keep-alive timeout (5 s), so a reused
#: connection is rarely one the server is closing at that moment.
KEEPALIVE_EXPIRY = 2.0
#: Connections per transport (httpx's default pool size).
MAX_CONNECTIONS = 100
# Headers aiohttp computes from the body it sends; httpx's copies are dropped.
_BODY_HEADERS = frozenset({"content-length", "transfer-encoding"})


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """The TLS context httpx builds for ``verify``: a CA file, or for ``True`` certifi's
    bundle (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set), or no verification for ``False``."""
    if isinstance(verify, str | Path):
        return ssl.create_default_context(cafile=str(verify))
    return httpx.create_ssl_context(verify=verify)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface on an aiohttp connection pool (one per instance)."""

    def __init__(
        self,
        verify: Verify = True,
        *,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        max_connections: int = MAX_CONNECTIONS,
        trust_env: bool = False,
    ) -> None:
        """``trust_env``: send through the proxy ``HTTP(S)_PROXY`` names (``NO_PROXY``
        honoured), as an ``httpx.AsyncClient`` of its own does; never ``.netrc``."""
        self._ssl = ssl_context(verify)
        self._keepalive_expiry = keepalive_expiry
        self._max_connections = max_connections
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._session: aiohttp.ClientSession | None = None

    def _proxy(self, url: str) -> str | None:
        if not self._proxies:
            return None
        parts = urllib.parse.urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy and urllib.request.proxy_bypass(parts.hostname or ""):  # NO_PROXY
            return None
        return proxy

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                # httpx decodes Content-Encoding itself, from the headers handed on.
                auto_decompress=False,
                # Only what httpx sends: no User-Agent or Accept-Encoding of aiohttp's own.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),
            )
            # aiohttp re-sends an idempotent request once on its own when a connection
            # breaks; AcmeTransport already retries every request once (and counts it), so
            # two layers would send a GET up to three times. aiohttp's own test client turns
            # it off the same way (no public setting); tests/unit/acme pin the count.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's entry point (when under an ``httpx.AsyncClient``)."""
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            if name.lower() not in _BODY_HEADERS
        ]
        content = await request.aread()
        limits = _timeout(request.extensions.get("timeout"))
        response = await self._exchange(
            request.method, str(request.url), headers, content, limits, request
        )
        return response

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None = None,
        *,
        io_timeout: float | None = None,
    ) -> httpx.Response:
        """One request without an ``httpx.AsyncClient`` around it (``AcmeTransport``'s path:
        the client's request building, cookies and hooks cost as much CPU as the HTTP).

        ``headers`` are sent as given (aiohttp adds Host and Content-Length); ``io_timeout``
        bounds connecting and each read (a deadline for the whole exchange is the caller's).
        Subclasses may wrap it (metrics, extra headers); ``handle_async_request`` (under an
        httpx client) does not pass through it.
        """
        limits = aiohttp.ClientTimeout(total=None, sock_connect=io_timeout, sock_read=io_timeout)
        return await self._exchange(method, url, list(headers.items()), content, limits)

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        limits: aiohttp.ClientTimeout,
        request: httpx.Request | None = None,
    ) -> httpx.Response:
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=limits,
                proxy=self._proxy(url),
            ) as answer:
                body = await answer.read()
                response = _Response(
                    answer.status,
                    headers=list(answer.raw_headers),
                    content=body,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _httpx_error(exc, request or httpx.Request(method, url)) from exc
        response.method_url = (method, url)
        return response

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _Response(httpx.Response):
    """An httpx response whose ``request`` is built when first asked for: most answers are
    never asked (a Link header or an error message is), and building one parses the URL
    again: ~40 µs a request, ~6% of the client's CPU in a download session (py-spy)."""

    method_url: tuple[str, str] = ("GET", "")

    @property
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = httpx.Request(*self.method_url)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value


def _timeout(spec: Any) -> aiohttp.ClientTimeout:
    # httpx's per-request timeouts: {"connect", "read", "write", "pool"}, seconds or None.
    if not isinstance(spec, dict):
        return aiohttp.ClientTimeout(total=None)
    return aiohttp.ClientTimeout(
        total=None, sock_connect=spec.get("connect"), sock_read=spec.get("read")
    )


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception httpx's own transport raises for the same failure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, the pool's wait
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # not HTTP (bad status line, headers)
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    # Reset or broken mid-exchange (ClientOSError, ClientConnectionResetError...).
    return httpx.ReadError(message, request=request)


__all__ = ["KEEPALIVE_EXPIRY", "AiohttpTransport", "ssl_context"]
