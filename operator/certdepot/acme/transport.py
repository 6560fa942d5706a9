"""The ACME transport: one connection pool, nonces, signed POSTs, problem documents.

``AcmeTransport`` is the part of the client that speaks HTTP; the RFC 8555 client
(``rfc8555.py``) and certdepot's extensions (``extensions.py``) build on it, and
``client.AcmeClient`` is the class callers use. Requests and responses are httpx's types.
Without a ``transport=`` (or with an ``aiohttp_transport.AiohttpTransport``) requests go
straight to aiohttp (``aiohttp_transport``: the default, at less CPU); any other httpx
transport (``httpx.ASGITransport`` to an in-process server in tests, a caller's wrapper)
is driven through an ``httpx.AsyncClient``.

- Every request has a timeout (``timeout=`` seconds) that also bounds a server trickling
  its answer; a kept-alive connection the server closed as we reused it is retried once.
- Nonces: a pool filled from every ``Replay-Nonce`` header; a request rejected with
  ``badNonce`` is re-signed with a fresh nonce and sent ``bad_nonce_retries`` more times.
- Errors: a problem document is raised as ``AcmeProblem`` (``retry_after`` from the
  ``Retry-After`` header, else from the problem's ``retry-after`` member); no HTTP answer
  is a ``transport_errors.TransportError`` chained from the httpx exception (the aiohttp
  transport raises httpx's exceptions too, chained from aiohttp's); an answer
  that is not JSON where JSON is due is ``client_errors.BadResponse``.
- Helpers: ``parse_links`` (``Link`` headers), ``retry_after_seconds`` (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import ssl
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin

import httpx

from certdepot.acme import crypto, fields, jws
from certdepot.acme.aiohttp_transport import AiohttpTransport
from certdepot.acme.aiohttp_transport import Verify as Verify  # callers import it from here
from certdepot.acme.client_errors import AccountRequired, BadResponse
from certdepot.acme.messages import Directory
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import (
    ConnectError,
    ProtocolError,
    Timeout,
    TlsError,
    TransportError,
)

JOSE_JSON = "application/jose+json"
USER_AGENT = "certdepot-acme/0.1"

#: The HTTP types the layers above name without importing httpx themselves.
Response = httpx.Response
AsyncBaseTransport = httpx.AsyncBaseTransport

def transport_error(method: str, url: str, exc: httpx.TransportError) -> TransportError:
    """The typed error for an httpx failure (the caller chains ``exc`` as its cause)."""
    message = f"{method} {url} failed: {type(exc).__name__}: {exc}"
    if _ssl_cause(exc):
        return TlsError(method, url, message)
    if isinstance(exc, httpx.ProtocolError):
        return ProtocolError(method, url, message)
    return ConnectError(method, url, message)


def _ssl_cause(exc: BaseException) -> bool:
    # httpx wraps the ssl module's error (via httpcore) in a ConnectError: look down the chain.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False



def parse_links(response: httpx.Response) -> list[tuple[str, str]]:
    """All ``Link`` header entries as ``(absolute url, rel)`` pairs, in order."""
    links: list[tuple[str, str]] = []
    for header in response.headers.get_list("link"):
        for part in _split_links(header):
            target, _, params = part.partition(">")
            url = target.strip().lstrip("<").strip()
            rel = ""
            for param in params.split(";"):
                name, _, value = param.strip().partition("=")
                if name.strip().lower() == "rel":
                    rel = value.strip().strip('"')
            if url:
                links.append((urljoin(str(response.request.url), url), rel))
    return links


def _split_links(header: str) -> list[str]:
    # Commas separate links but may also occur inside <...>; split only outside brackets.
    parts, depth, current = [], 0, ""
    for char in header:
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date), ``None`` if absent/invalid."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    # Compact: the JWS members are base64url strings; spaces would only add bytes.
    return json.dumps(body, separators=(",", ":")).encode()


class AcmeTransport:
    """One ACME account's HTTP exchanges with one server. Use as ``async with``."""

    def __init__(
        self,
        directory_url: str,
        key: crypto.PrivateKey,
        *,
        account_url: str | None = None,
        transport: AsyncBaseTransport | None = None,
        verify: Verify = True,
        timeout: float = 15.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        poll_timeout: float = 120.0,
        user_agent: str = USER_AGENT,
        bad_nonce_retries: int = 1,
    ) -> None:
        self.directory_url = directory_url
        self.key = key
        self.account_url = account_url
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.poll_timeout = poll_timeout
        #: Re-sends allowed per request after ``badNonce``; RFC 8555 §6.5 suggests retrying,
        #: certdepot's contract is exactly one. Tests against a nonce-rejecting CA may raise it.
        self.max_bad_nonce_retries = bad_nonce_retries
        #: How many requests were re-sent after ``badNonce`` (observability; tests).
        self.bad_nonce_retries = 0
        self.reconnects = 0  # requests re-sent after the server closed a reused connection
        self._nonces: deque[str] = deque(maxlen=32)
        self._directory: Directory | None = None
        self._user_agent = user_agent
        # Real sockets go through aiohttp directly (the CPU an httpx.AsyncClient adds is
        # not spent); any other transport (ASGI in tests, a caller's) under httpx's client.
        self._direct: AiohttpTransport | None = None
        self._http: httpx.AsyncClient | None = None
        if transport is None or isinstance(transport, AiohttpTransport):
            # Proxies from the environment, as the httpx.AsyncClient this replaces honoured.
            self._direct = transport or AiohttpTransport(verify, trust_env=True)
        else:
            self._http = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(timeout),
                headers={"User-Agent": user_agent},
                follow_redirects=False,
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._direct is not None:
            await self._direct.aclose()
        if self._http is not None:
            await self._http.aclose()

    @property
    def jwk(self) -> dict[str, str]:
        """The account key's public JWK."""
        return jws.public_jwk(self.key)

    async def _request(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        if self._direct is not None:
            headers.setdefault("Accept", "*/*")
            headers["User-Agent"] = self._user_agent
            return await self._direct.send(
                method, url, headers, content, io_timeout=self.timeout
            )
        assert self._http is not None
        return await self._http.request(method, url, content=content, headers=headers)

    async def _send(
        self,
        method: str,
        url: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            # httpx bounds each phase (connect, each read...); the outer deadline also bounds a
            # server that trickles its answer byte by byte.
            async with asyncio.timeout(self.timeout):
                try:
                    response = await self._request(method, url, content, dict(headers or {}))
                except httpx.RemoteProtocolError:
                    # The server closed a kept-alive connection just as we reused it (its idle
                    # timeout raced our request, common when this process is busy). Send the
                    # same bytes once more on a new connection: the server handles one signed
                    # request at most once, since its nonce is single use (a copy of one it
                    # did handle gets badNonce).
                    self.reconnects += 1
                    response = await self._request(method, url, content, dict(headers or {}))
        except (httpx.TimeoutException, TimeoutError) as exc:
            message = f"{method} {url} timed out after {self.timeout:g}s"
            raise Timeout(method, url, message) from exc
        except httpx.TransportError as exc:
            raise transport_error(method, url, exc) from exc
        nonce = response.headers.get("replay-nonce")
        if nonce:
            self._nonces.append(nonce)
        return response

    @staticmethod
    def _raise_for_problem(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        url = str(response.request.url)
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "type" in doc:
            problem = AcmeProblem.from_json(doc, status=response.status_code)
        else:
            snippet = response.text[:200].strip()
            problem = AcmeProblem(
                "serverInternal" if response.status_code >= 500 else "malformed",
                f"HTTP {response.status_code} from {url} without a problem document"
                + (f": {snippet}" if snippet else ""),
                status=response.status_code,
            )
        problem.retry_after = retry_after_seconds(response)
        hint = problem.extra.get(fields.PROBLEM_RETRY_AFTER)
        if problem.retry_after is None and isinstance(hint, int | float) and hint >= 0:
            problem.retry_after = float(hint)
        raise problem

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise BadResponse(
                f"{response.request.url} answered {response.status_code} without JSON"
            ) from exc

    async def get(self, url: str) -> httpx.Response:
        """An unauthenticated GET (directory, renewalInfo); problems raised."""
        response = await self._send("GET", url)
        self._raise_for_problem(response)
        return response

    async def directory(self, refresh: bool = False) -> Directory:
        """The server's directory (cached)."""
        if self._directory is None or refresh:
            self._directory = Directory.from_json(
                self._json(await self.get(self.directory_url)), self.directory_url
            )
        return self._directory

    async def new_nonce(self) -> str:
        """A fresh nonce from ``newNonce`` (HEAD)."""
        url = (await self.directory()).new_nonce
        response = await self._send("HEAD", url)
        nonce = response.headers.get("replay-nonce")
        if response.status_code >= 400 or not nonce:
            self._raise_for_problem(response)
            raise BadResponse(f"HEAD {url} returned no Replay-Nonce")
        self._nonces.pop()  # _send pooled it; hand it out directly instead
        return str(nonce)

    async def _take_nonce(self) -> str:
        # Newest first: an old pooled nonce may have expired, and after badNonce the retry
        # must use the nonce that came with the error response.
        if self._nonces:
            return self._nonces.pop()
        return await self.new_nonce()

    async def post(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes | None,
        *,
        use_jwk: bool = False,
        key: crypto.PrivateKey | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        """A signed POST. ``payload=None`` is POST-as-GET. Raises ``AcmeProblem`` on errors.

        ``use_jwk`` embeds the public key instead of the account URL (newAccount, revocation
        by certificate key); ``key`` signs with another key than the account's.
        """
        signer = key or self.key
        if not use_jwk and self.account_url is None:
            raise AccountRequired(f"POST {url} needs an account: call new_account first")
        headers = {"Content-Type": JOSE_JSON}
        if accept:
            headers["Accept"] = accept
        attempt = 0
        while True:
            attempt += 1
            body = jws.sign(
                payload,
                signer,
                url=url,
                nonce=await self._take_nonce(),
                kid=None if use_jwk else self.account_url,
            )
            response = await self._send("POST", url, _json_bytes(body), headers)
            try:
                self._raise_for_problem(response)
            except AcmeProblem as problem:
                # RFC 8555 §6.5: the error response carries a fresh nonce; retry once with it.
                if problem.short_type == "badNonce" and attempt <= self.max_bad_nonce_retries:
                    self.bad_nonce_retries += 1
                    continue
                raise
            return response

    async def post_as_get(self, url: str, *, accept: str | None = None) -> httpx.Response:
        """POST-as-GET (RFC 8555 §6.3)."""
        return await self.post(url, None, accept=accept)

    def _require_account(self) -> str:
        if self.account_url is None:
            raise AccountRequired("no account: call new_account first")
        return self.account_url
