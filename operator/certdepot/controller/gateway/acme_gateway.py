"""RepositoryGateway over certdepot.acme.client.AcmeClient: request metrics, and a pool of
clients.

The pool: AcmeClients kept per (repository endpoint, account) and reused across downloads, so a
download finds the directory, TLS context, a kept-alive connection and a nonce already
there instead of building them per call.

Each client serves one caller at a time (a free list per key, like a connection pool):
sharing one client among hundreds of concurrent downloads would put them all in one httpx
connection pool, whose bookkeeping grows with requests x connections (measured: more
operator CPU than a client per download).

A client is keyed by everything the repository resource contributes to it (directory URL,
CA bundle, account key, account URL): when any of them changes, the next call gets a new
client and the old ones are closed once idle. Clients are also replaced after ``max_age``
(the directory is re-read and a kept nonce never nears the server's nonce lifetime) and
closed after ``max_idle`` without use.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509

from certdepot.acme import fields, jws
from certdepot.acme.aiohttp_transport import AiohttpTransport
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import TransportError
from certdepot.controller.gateway.model import (
    AccountInfo,
    Delegation,
    Downloaded,
    Endpoint,
    ExternalAccount,
    Issued,
    RenewalWindow,
)
from certdepot.controller.gateway.sharing import DownloadCoalescer, SharedCalls, names_key
from certdepot.controller.ops.metrics import Metrics


def endpoint_key(endpoint: Endpoint) -> tuple[str, str, str, str]:
    """What makes two endpoints the same client; the key itself appears only as its
    public thumbprint."""
    ca = hashlib.sha256(endpoint.ca_pem).hexdigest() if endpoint.ca_pem is not None else ""
    thumbprint = jws.jwk_thumbprint(jws.public_jwk(endpoint.account_key)).hex()
    return (endpoint.directory_url, ca, thumbprint, endpoint.account_url or "")


@dataclass
class _Idle:
    client: AcmeClient
    created: float
    last_used: float


class ClientPool:
    def __init__(
        self,
        *,
        max_age: float = 300.0,
        max_idle: float = 60.0,
        max_idle_clients: int = 64,
        max_active: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._max_idle = max_idle
        self._max_idle_clients = max_idle_clients
        self._clock = clock
        self._idle: dict[Hashable, list[_Idle]] = {}
        # At most max_active clients (so connections) per key in use at once; more callers
        # wait. Unbounded, a restart with thousands of certificates opened thousands of
        # connections at once, and an overloaded operator then reused kept-alive ones past
        # the repository's idle timeout.
        self._max_active = max_active
        self._slots: dict[Hashable, asyncio.Semaphore] = {}

    def __len__(self) -> int:
        """Idle clients kept."""
        return sum(len(v) for v in self._idle.values())

    def _fit(self, entry: _Idle, now: float) -> bool:
        return now - entry.created <= self._max_age and now - entry.last_used <= self._max_idle

    @asynccontextmanager
    async def lease(
        self, key: Hashable, make: Callable[[], AcmeClient]
    ) -> AsyncIterator[AcmeClient]:
        """A client for ``key``, the caller's alone for the ``async with`` body: the most
        recently used idle one (freshest connection and nonce), else one made by ``make``."""
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self._max_active)
        async with slots, self._lease(key, make) as client:
            yield client

    @asynccontextmanager
    async def _lease(
        self, key: Hashable, make: Callable[[], AcmeClient]
    ) -> AsyncIterator[AcmeClient]:
        now = self._clock()
        await self._sweep(now)
        free = self._idle.get(key) or []
        entry = free.pop() if free else _Idle(make(), created=now, last_used=now)
        ok = False
        try:
            yield entry.client
            ok = True
        finally:
            # After a failure (timeout, dropped connection, a problem document) the client
            # is not kept: a fresh one next time costs little and trusts no half state.
            entry.last_used = self._clock()
            if ok and self._fit(entry, entry.last_used) and len(self) < self._max_idle_clients:
                self._idle.setdefault(key, []).append(entry)
            else:
                await entry.client.aclose()

    async def _sweep(self, now: float) -> None:
        """Close idle clients no longer fit (e.g. of a repository whose URL or key changed)."""
        # Take them out before the first await: concurrent callers sweep too, and one that
        # resumed inside this loop found keys another had already deleted (KeyError).
        stale: list[_Idle] = []
        for key in list(self._idle):
            keep = [e for e in self._idle[key] if self._fit(e, now)]
            stale += [e for e in self._idle[key] if not self._fit(e, now)]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for entry in stale:
            await entry.client.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for entries in idle.values():
            for entry in entries:
                await entry.client.aclose()


#: Consumer-identity headers for the requests of the current task (docs/protocol.md,
#: "Consumer identity"): set around a download or a renewalInfo poll.
_consumer_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "certdepot_consumer_headers", default=None
)

#: At most this many CertificateDownloads are named per download (the repository's bound).
MAX_NAMED_RESOURCES = 200


class RequestMetrics:
    """The request counter and duration histogram, their labelled children bound once per
    (method, status) rather than looked up per request (``labels()`` was 5% of the
    operator's CPU in a rollout)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._counts: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    async def measure(self, method: str, exchange: Awaitable[httpx.Response]
                      ) -> httpx.Response:
        """Await one request's ``exchange``, counted and timed (status "error" when it
        raised): the one place both transports record a request."""
        start = time.monotonic()
        status = "error"
        try:
            response = await exchange
            status = str(response.status_code)
            return response
        finally:
            self.record(method, status, time.monotonic() - start)

    def record(self, method: str, status: str, seconds: float) -> None:
        count = self._counts.get((method, status))
        if count is None:
            count = self._counts[method, status] = self._metrics.acme_requests.labels(
                method, status
            )
        duration = self._durations.get(method)
        if duration is None:
            duration = self._durations[method] = self._metrics.acme_duration.labels(method)
        count.inc()
        duration.observe(seconds)


class MeasuredTransport(httpx.AsyncBaseTransport):
    """Counts and times every HTTP request to a repository (method, status), and adds the
    consumer-identity headers of the task sending it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: RequestMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers.update(_consumer_headers.get() or {})
        return await self._metrics.measure(
            request.method, self._inner.handle_async_request(request))

    async def aclose(self) -> None:
        await self._inner.aclose()


class MeasuredAiohttpTransport(AiohttpTransport):
    """MeasuredTransport's metrics and consumer headers on the aiohttp transport, which
    AcmeTransport drives through ``send`` without an httpx.AsyncClient (half the client's
    CPU per request: docs/performance.md, "The ACME client's HTTP layer")."""

    def __init__(self, verify: bool | ssl.SSLContext, metrics: RequestMetrics) -> None:
        super().__init__(verify)
        self._metrics = metrics

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None = None,
        *,
        io_timeout: float | None = None,
    ) -> httpx.Response:
        extra = _consumer_headers.get()
        if extra:
            headers = {**headers, **extra}
        return await self._metrics.measure(
            method, super().send(method, url, headers, content, io_timeout=io_timeout))


def _verify(endpoint: Endpoint) -> bool | ssl.SSLContext:
    if endpoint.ca_pem is None:
        return True
    return ssl.create_default_context(cadata=endpoint.ca_pem.decode())


class AcmeGateway:
    def __init__(
        self,
        metrics: Metrics,
        *,
        timeout: float = 30.0,
        poll_timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
        download_reuse: float = 0.0,
        renewal_info_reuse: float = 0.0,
        cluster_id: str = "",
    ) -> None:
        # Sent to repositories so their inventory can tell clusters apart ("" = not sent).
        self.cluster_id = cluster_id
        # CertificateDownloads (namespace/name) that downloaded each (account, names) here:
        # a download names them all, as one coalesced download serves them all.
        self._resources: dict[tuple[Any, ...], set[str]] = {}
        self._metrics = metrics
        self._request_metrics = RequestMetrics(metrics)  # shared by every pooled client
        self._timeout = timeout
        self._poll_timeout = poll_timeout
        self._transport = transport  # tests: httpx.ASGITransport to an in-process repository
        self._clients = ClientPool()
        # Downloads of one certificate by many CertificateDownloads share one session.
        self.downloads = DownloadCoalescer(download_reuse)
        # ... and so do their ARI questions about one certificate (same answer for all).
        self.renewal_windows: SharedCalls[RenewalWindow | None] = SharedCalls(renewal_info_reuse)

    @asynccontextmanager
    async def _client(self, endpoint: Endpoint) -> AsyncIterator[AcmeClient]:
        """The pooled client for this endpoint and account (see ClientPool)."""
        async with self._clients.lease(
            endpoint_key(endpoint), lambda: self._new_client(endpoint)
        ) as client:
            yield client

    def _new_client(self, endpoint: Endpoint) -> AcmeClient:
        verify = _verify(endpoint)
        # The aiohttp transport drops idle connections after 2 s, well before the
        # repository's keep-alive timeout (uvicorn: 5 s), so a reused connection is never
        # one the server is closing. Tests give an httpx transport (ASGI, in process).
        transport: httpx.AsyncBaseTransport = (
            MeasuredTransport(self._transport, self._request_metrics)
            if self._transport
            else MeasuredAiohttpTransport(verify, self._request_metrics)
        )
        return AcmeClient(
            endpoint.directory_url,
            endpoint.account_key,
            account_url=endpoint.account_url,
            transport=transport,
            verify=verify,
            timeout=self._timeout,
            poll_timeout=self._poll_timeout,
        )

    async def register(
        self, endpoint: Endpoint, *, email: str | None, eab: ExternalAccount | None
    ) -> AccountInfo:
        # Its own client: registration sets the account URL, part of the pooled key.
        async with self._new_client(endpoint) as client:
            directory = await client.directory()
            try:
                # Reuse the account bound to this key (restart, second replica) without
                # spending the EAB credentials again.
                account = await client.lookup_account()
            except AcmeProblem as problem:
                if problem.short_type != "accountDoesNotExist":
                    raise
                account = await client.new_account(
                    [f"mailto:{email}"] if email else (),
                    eab=(eab.key_id, eab.hmac_key_b64) if eab else None,
                )
            meta = directory.meta
            offered: dict[str, Any] = {
                "downloadEnabled": meta.download_enabled,
                "delegationEnabled": meta.delegation_enabled,
                "renewalInfo": bool(directory.renewal_info),
                "externalAccountRequired": bool(meta.external_account_required),
            }
            if meta.terms_of_service:
                offered["termsOfService"] = meta.terms_of_service
            if meta.profiles:
                offered["profiles"] = dict(meta.profiles)
            delegations: list[str] = []
            if meta.delegation_enabled and account.delegations:
                try:
                    delegations = await client.list_delegations()
                except (AcmeProblem, TransportError):
                    delegations = []
            return AccountInfo(
                url=str(client.account_url or account.url),
                directory=offered,
                delegations=delegations,
            )

    def _identity(
        self, resources: Sequence[str] = (), account: str | None = None
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.cluster_id:
            headers["Certdepot-Cluster"] = self.cluster_id
        if resources:
            headers["Certdepot-Resources"] = " ".join(sorted(resources)[:MAX_NAMED_RESOURCES])
        if account:
            headers["Certdepot-Account"] = account
        return headers

    async def download(
        self,
        endpoint: Endpoint,
        dns_names: Sequence[str],
        current_serial: str | None = None,
        resource: str | None = None,
    ) -> Downloaded:
        names = list(dns_names)
        key = (endpoint_key(endpoint), names_key(names))
        resources = self._resources.setdefault(key, set())
        if resource and len(resources) < MAX_NAMED_RESOURCES:
            resources.add(resource)

        async def fetch() -> Downloaded:
            _consumer_headers.set(self._identity(sorted(resources)))
            async with self._client(endpoint) as client:
                chain, key = await client.download_certificate(names)
                return Downloaded(chain_pem=chain, key=key)

        return await self.downloads.download(key, current_serial, fetch)

    def forget_resource(self, resource: str) -> None:
        """A CertificateDownload is gone: downloads stop naming it."""
        for resources in self._resources.values():
            resources.discard(resource)

    async def renewal_window(
        self, endpoint: Endpoint, cert: x509.Certificate
    ) -> RenewalWindow | None:
        async def ask() -> RenewalWindow | None:
            # A poll naming the account is a check-in in the repository's inventory.
            _consumer_headers.set(self._identity(account=endpoint.account_url))
            async with self._client(endpoint) as client:
                if not (await client.directory()).renewal_info:
                    return None
                info = await client.renewal_info(cert)
                revoked = info.extra.get(fields.REVOKED)
                reason = revoked.get(fields.REVOKED_REASON) if isinstance(revoked, dict) else None
                return RenewalWindow(
                    start=info.start,
                    end=info.end,
                    serial=format(cert.serial_number, "x"),
                    retry_after=info.retry_after,
                    revoked=str(reason)[:64] if reason else None,
                )

        key = (endpoint_key(endpoint), cert.issuer.public_bytes(), cert.serial_number)
        return await self.renewal_windows.call(key, ask)

    async def delegations(self, endpoint: Endpoint) -> list[Delegation]:
        async with self._client(endpoint) as client:
            out = []
            for url in await client.list_delegations():
                item = await client.get_delegation(url)
                out.append(
                    Delegation(
                        url=url,
                        csr_template=dict(item.csr_template),
                        cname_map=dict(item.cname_map),
                    )
                )
            return out

    async def delegated_order(
        self,
        endpoint: Endpoint,
        *,
        delegation_url: str,
        dns_names: Sequence[str],
        csr_der: bytes,
        extra: dict[str, Any] | None = None,
    ) -> Issued:
        async with self._client(endpoint) as client:
            order = await client.delegated_order(
                delegation_url, csr_der, identifiers=list(dns_names), extra=extra
            )
            # RFC 8739: an auto-renewed order links a stable URL that always serves the current one.
            url = order.get(fields.STAR_CERTIFICATE) or order.certificate
            if not url:
                raise AcmeProblem("serverInternal", f"valid order {order.url} has no certificate")
            chains = await client.fetch_certificate(str(url), alternates=False)
            return Issued(chain_pem=chains.pem, certificate_url=str(url), order_url=order.url or "")

    async def fetch_certificate(self, endpoint: Endpoint, url: str) -> str:
        async with self._client(endpoint) as client:
            return (await client.fetch_certificate(url, alternates=False)).pem

    async def aclose(self) -> None:
        """Close the pooled clients (operator shutdown, tests)."""
        await self.downloads.aclose()
        await self._clients.aclose()
