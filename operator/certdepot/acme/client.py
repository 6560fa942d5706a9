"""An async ACME client on httpx (RFC 8555, EAB, RFC 9773 ARI, profiles, certdepot's extensions).

::

    async with AcmeClient(directory_url, account_key, verify=ca_path) as acme:
        await acme.new_account(contact=["mailto:ops@example.test"], eab=(kid, hmac_b64))
        order = await acme.new_order([Identifier.dns("www.example.test")], profile="shortlived")
        order = await acme.solve(order, solver)            # or answer challenges yourself
        order = await acme.finalize(order, csr_der)
        chains = await acme.fetch_certificate(order.certificate)

Transport: one ``httpx.AsyncClient`` per ``AcmeClient``; pass ``transport=httpx.ASGITransport(app)``
to talk to an in-process server. Every request has a timeout (``timeout=`` seconds).

Nonces: a pool filled from every ``Replay-Nonce`` header; a request rejected with
``badNonce`` is re-signed with a fresh nonce and sent exactly once more.

Errors: a problem document from the server is raised as ``AcmeProblem`` (with
``retry_after`` set from a ``Retry-After`` header, e.g. on ``rateLimited``). When no HTTP
answer arrives the client raises a ``transport_errors.TransportError`` naming the URL and
chained from the httpx exception: ``Timeout`` (also a ``TimeoutError``), ``TlsError``,
``ConnectError`` or ``ProtocolError``. Answers that are not what RFC 8555 promises are
``AcmeClientError`` (an ``AcmeProblem`` subclass, type ``urn:certdepot:error:badResponse``; a
500 without a problem document is ``serverInternal``).
Polling (``poll_order``, ``poll_authorization``) honours ``Retry-After`` within
``[poll_interval, max_poll_interval]`` and gives up with ``AcmeTimeout`` after ``poll_timeout``.

certdepot extensions (docs/protocol.md §4/§5): ``download_certificate(identifiers,
pin_root=None)`` returns ``(chain_pem, private_key)``; ``list_delegations()``,
``get_delegation(url)`` and ``delegated_order(delegation_url, csr_der)`` implement the RFC 9115
client side.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ssl
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urljoin

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certdepot.acme import ari, crypto, jws, keywrap
from certdepot.acme.challenges import key_authorization
from certdepot.acme.eab import create_eab
from certdepot.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Delegation,
    Directory,
    Identifier,
    Order,
    RenewalInfo,
    Status,
)
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339
from certdepot.acme.transport_errors import (
    ConnectError,
    ProtocolError,
    Timeout,
    TlsError,
    TransportError,
)

CLIENT_NS = "urn:certdepot:error:"
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
USER_AGENT = "certdepot-acme/0.1"

Verify = bool | str | Path | ssl.SSLContext


class AcmeClientError(AcmeProblem):
    """The client could not complete an exchange (the detail names the URL)."""

    @classmethod
    def make(cls, kind: str, detail: str, status: int = 502) -> AcmeClientError:
        return cls(type=CLIENT_NS + kind, detail=detail, status=status)


class AcmeTimeout(AcmeClientError, TimeoutError):
    """A request or a poll did not finish in time."""


def _timeout(detail: str) -> AcmeTimeout:
    return AcmeTimeout(type=CLIENT_NS + "timeout", detail=detail, status=504)


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


@dataclass(frozen=True)
class CertificateChains:
    """A downloaded certificate: the default chain and any alternates (RFC 8555 §7.4.2)."""

    pem: str
    alternates: tuple[str, ...] = ()
    url: str = ""

    @property
    def leaf(self) -> x509.Certificate:
        return crypto.parse_pem_chain(self.pem)[0]


class ChallengeSolver(Protocol):
    """Publishes and removes challenge responses for ``AcmeClient.solve``."""

    challenge_type: str

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        """Make the response visible (serve the http-01 body, set the dns-01 TXT record)."""

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        """Remove it again."""


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


def _ssl_context(verify: Verify) -> bool | ssl.SSLContext:
    if isinstance(verify, str | Path):
        return ssl.create_default_context(cafile=str(verify))
    return verify


def _root_list(
    pin_root: str | bytes | x509.Certificate | Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    if isinstance(pin_root, x509.Certificate):
        return [pin_root]
    if isinstance(pin_root, str | bytes):
        return crypto.parse_pem_chain(pin_root)
    return list(pin_root)


class AcmeClient:
    """One ACME account's view of one server. Use as ``async with``."""

    def __init__(
        self,
        directory_url: str,
        key: crypto.PrivateKey,
        *,
        account_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=_ssl_context(verify),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent},
            follow_redirects=False,
        )

    async def __aenter__(self) -> AcmeClient:
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
        await self._http.aclose()

    @property
    def jwk(self) -> dict[str, str]:
        """The account key's public JWK."""
        return jws.public_jwk(self.key)

    def key_authorization(self, challenge: Challenge) -> str:
        """The key authorization for a challenge under this account key."""
        if not challenge.token:
            raise AcmeClientError.make("badResponse", f"challenge {challenge.url} has no token")
        return key_authorization(challenge.token, self.jwk)

    # ---- transport -------------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            # httpx bounds each phase (connect, each read...); the outer deadline also bounds a
            # server that trickles its answer byte by byte.
            async with asyncio.timeout(self.timeout):
                try:
                    response = await self._http.request(method, url, **kwargs)
                except httpx.RemoteProtocolError:
                    # The server closed a kept-alive connection just as we reused it (its idle
                    # timeout raced our request, common when this process is busy). Send the
                    # same bytes once more on a new connection: the server handles one signed
                    # request at most once, since its nonce is single use (a copy of one it
                    # did handle gets badNonce).
                    self.reconnects += 1
                    response = await self._http.request(method, url, **kwargs)
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
        raise problem

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise AcmeClientError.make(
                "badResponse",
                f"{response.request.url} answered {response.status_code} without JSON",
            ) from None

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
            raise AcmeClientError.make("badResponse", f"HEAD {url} returned no Replay-Nonce")
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
            raise AcmeClientError.make(
                "accountRequired", f"POST {url} needs an account: call new_account first", 400
            )
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
            response = await self._send("POST", url, json=body, headers=headers)
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

    # ---- accounts --------------------------------------------------------------------------

    async def new_account(
        self,
        contact: Iterable[str] = (),
        *,
        eab: tuple[str, str] | Mapping[str, str] | None = None,
        eab_alg: str = "HS256",
        tos: bool = True,
        only_return_existing: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Account:
        """Create (or, with ``only_return_existing``, look up) the account for this key.

        ``eab`` is ``(key_id, hmac_key_base64url)`` or ``{"kid": ..., "hmac_key": ...}``.
        Sets ``self.account_url`` from the ``Location`` header.
        """
        directory = await self.directory()
        payload: dict[str, Any] = dict(extra or {})
        contacts = list(contact)
        if contacts:
            payload["contact"] = contacts
        if tos:
            payload["termsOfServiceAgreed"] = True
        if only_return_existing:
            payload["onlyReturnExisting"] = True
        if eab is not None:
            kid, hmac_key = (eab["kid"], eab["hmac_key"]) if isinstance(eab, Mapping) else eab
            payload["externalAccountBinding"] = create_eab(
                self.key, kid, hmac_key, directory.new_account, alg=eab_alg
            )
        response = await self.post(directory.new_account, payload, use_jwk=True)
        location = response.headers.get("location")
        if not location:
            raise AcmeClientError.make(
                "badResponse", f"{directory.new_account} returned no account Location"
            )
        self.account_url = urljoin(directory.new_account, location)
        return Account.from_json(self._json(response), self.account_url)

    async def lookup_account(self) -> Account:
        """The existing account for this key (``accountDoesNotExist`` if none)."""
        return await self.new_account(tos=False, only_return_existing=True)

    async def get_account(self) -> Account:
        """The current account object."""
        url = self._require_account()
        return Account.from_json(self._json(await self.post_as_get(url)), url)

    async def update_account(
        self, contact: Iterable[str] | None = None, extra: Mapping[str, Any] | None = None
    ) -> Account:
        """Change contacts (or other fields) of the account."""
        url = self._require_account()
        payload: dict[str, Any] = dict(extra or {})
        if contact is not None:
            payload["contact"] = list(contact)
        return Account.from_json(self._json(await self.post(url, payload)), url)

    async def deactivate_account(self) -> Account:
        """Deactivate the account (irreversible)."""
        return await self.update_account(extra={"status": Status.DEACTIVATED})

    async def key_change(self, new_key: crypto.PrivateKey) -> None:
        """Roll the account over to ``new_key`` (RFC 8555 §7.3.5); later requests use it."""
        url = (await self.directory()).key_change
        if not url:
            raise AcmeClientError.make(
                "unsupported", f"{self.directory_url} offers no keyChange", 400
            )
        account = self._require_account()
        inner = jws.sign({"account": account, "oldKey": self.jwk}, new_key, url=url)
        await self.post(url, inner)
        self.key = new_key

    def _require_account(self) -> str:
        if self.account_url is None:
            raise AcmeClientError.make("accountRequired", "no account: call new_account first", 400)
        return self.account_url

    # ---- orders ----------------------------------------------------------------------------

    async def new_order(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        profile: str | None = None,
        replaces: str | x509.Certificate | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Order:
        """Place an order. Strings are DNS names; ``replaces`` takes a CertID or certificate;
        ``extra`` merges extension fields (``{"download": True}``, ``{"delegation": url}``)."""
        directory = await self.directory()
        idents = [i if isinstance(i, Identifier) else Identifier.dns(i) for i in identifiers]
        payload: dict[str, Any] = {"identifiers": [i.to_json() for i in idents]}
        if profile is not None:
            payload["profile"] = profile
        if replaces is not None:
            payload["replaces"] = replaces if isinstance(replaces, str) else ari.cert_id(replaces)
        if not_before is not None:
            payload["notBefore"] = rfc3339(not_before, fraction=True)
        if not_after is not None:
            payload["notAfter"] = rfc3339(not_after, fraction=True)
        payload.update(extra or {})
        response = await self.post(directory.new_order, payload)
        location = response.headers.get("location")
        if not location:
            raise AcmeClientError.make(
                "badResponse", f"{directory.new_order} returned no order Location"
            )
        return Order.from_json(self._json(response), urljoin(directory.new_order, location))

    async def get_order(self, order: Order | str) -> Order:
        """Refresh an order."""
        url = order if isinstance(order, str) else order.url
        if not url:
            raise AcmeClientError.make("badResponse", "order has no URL")
        return Order.from_json(self._json(await self.post_as_get(url)), url)

    async def get_authorization(self, url: str) -> Authorization:
        """Fetch one authorization."""
        return Authorization.from_json(self._json(await self.post_as_get(url)), url)

    async def authorizations(self, order: Order) -> list[Authorization]:
        """All authorizations of an order."""
        return [await self.get_authorization(u) for u in order.authorizations]

    async def answer_challenge(
        self, challenge: Challenge | str, payload: Mapping[str, Any] | None = None
    ) -> Challenge:
        """Tell the server a challenge is ready (payload ``{}`` unless given)."""
        url = challenge if isinstance(challenge, str) else challenge.url
        return Challenge.from_json(self._json(await self.post(url, dict(payload or {}))), url)

    async def _poll(self, url: str, done: Any, parse: Any, max_wait: float | None) -> Any:
        limit = self.poll_timeout if max_wait is None else max_wait
        deadline = time.monotonic() + limit
        while True:
            response = await self.post_as_get(url)
            obj = parse(self._json(response), url)
            if done(obj):
                return obj
            wait = retry_after_seconds(response)
            wait = self.poll_interval if wait is None else wait
            wait = min(max(wait, self.poll_interval), self.max_poll_interval)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(f"{url} still {obj.status!r} after polling for {limit:g}s")
            await asyncio.sleep(min(wait, remaining))

    async def poll_order(
        self,
        order: Order | str,
        *,
        max_wait: float | None = None,
        until: Iterable[str] | None = None,
    ) -> Order:
        """Poll until the order leaves ``pending``/``processing`` (or reaches one of ``until``)."""
        url = order if isinstance(order, str) else order.url or ""
        targets = set(until) if until is not None else None

        def done(o: Order) -> bool:
            if targets is not None:
                return o.status in targets or o.status == Status.INVALID
            return o.status not in (Status.PENDING, Status.PROCESSING)

        result: Order = await self._poll(url, done, Order.from_json, max_wait)
        return result

    async def poll_authorization(self, url: str, *, max_wait: float | None = None) -> Authorization:
        """Poll until the authorization is no longer ``pending``."""
        result: Authorization = await self._poll(
            url, lambda a: a.status != Status.PENDING, Authorization.from_json, max_wait
        )
        return result

    async def solve(
        self, order: Order, solver: ChallengeSolver, *, max_wait: float | None = None
    ) -> Order:
        """Answer every pending authorization of ``order`` with ``solver``; return it ``ready``.

        An authorization that turns invalid raises its challenge's problem.
        """
        for authz in await self.authorizations(order):
            if authz.status == Status.VALID:
                continue
            if authz.status != Status.PENDING:
                raise AcmeProblem("unauthorized", f"authorization {authz.url} is {authz.status}")
            challenge = authz.challenge(solver.challenge_type)
            if challenge is None:
                offered = ", ".join(c.type for c in authz.challenges) or "none"
                raise AcmeProblem(
                    "unauthorized",
                    f"{authz.identifier.value}: no {solver.challenge_type} challenge"
                    f" (offered: {offered})",
                )
            keyauth = self.key_authorization(challenge)
            await solver.present(authz.identifier, challenge, keyauth)
            try:
                await self.answer_challenge(challenge)
                final = await self.poll_authorization(authz.url or "", max_wait=max_wait)
            finally:
                await solver.cleanup(authz.identifier, challenge, keyauth)
            if final.status != Status.VALID:
                failed = final.challenge(solver.challenge_type)
                if failed is not None and failed.error is not None:
                    raise failed.error
                raise AcmeProblem(
                    "unauthorized", f"authorization for {authz.identifier.value} is {final.status}"
                )
        return await self.poll_order(order, max_wait=max_wait)

    async def finalize(
        self,
        order: Order,
        csr_der: bytes | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        wait: bool = True,
        max_wait: float | None = None,
    ) -> Order:
        """Finalize with a CSR (DER) or a replacement ``payload`` (``{"ephemeral-jwk": ...}``).

        With ``wait`` polls until ``valid``; an order that ends ``invalid`` raises its error.
        """
        if (csr_der is None) == (payload is None):
            raise ValueError("give exactly one of csr_der and payload")
        body = dict(payload) if payload is not None else {"csr": jws.b64encode(csr_der or b"")}
        response = await self.post(order.finalize, body)
        result = Order.from_json(self._json(response), order.url)
        if wait and result.status in (Status.PROCESSING, Status.PENDING, Status.READY):
            result = await self.poll_order(
                result.url or order.finalize, max_wait=max_wait, until=[Status.VALID]
            )
        if result.status == Status.INVALID:
            raise result.error or AcmeProblem("serverInternal", f"order {order.url} became invalid")
        return result

    async def fetch_certificate(self, url: str, *, alternates: bool = True) -> CertificateChains:
        """The PEM chain at ``url`` and, with ``alternates``, every ``rel="alternate"`` chain."""
        response = await self.post_as_get(url, accept=PEM_CHAIN)
        pem = response.text
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise AcmeClientError.make(
                "badResponse", f"{url} did not return a PEM certificate chain"
            )
        others: list[str] = []
        if alternates:
            for link, rel in parse_links(response):
                if rel == "alternate":
                    others.append((await self.post_as_get(link, accept=PEM_CHAIN)).text)
        return CertificateChains(pem=pem, alternates=tuple(others), url=url)

    async def revoke(
        self,
        cert: x509.Certificate | str | bytes,
        reason: int | None = None,
        *,
        cert_key: crypto.PrivateKey | None = None,
    ) -> None:
        """Revoke a certificate, as the account or (with ``cert_key``) by the certificate's key."""
        url = (await self.directory()).revoke_cert
        if not url:
            raise AcmeClientError.make(
                "unsupported", f"{self.directory_url} offers no revokeCert", 400
            )
        certificate = (
            cert if isinstance(cert, x509.Certificate) else crypto.parse_pem_chain(cert)[0]
        )
        payload: dict[str, Any] = {
            "certificate": jws.b64encode(certificate.public_bytes(serialization.Encoding.DER))
        }
        if reason is not None:
            payload["reason"] = reason
        if cert_key is not None:
            await self.post(url, payload, use_jwk=True, key=cert_key)
        else:
            await self.post(url, payload)

    async def renewal_info(self, cert: x509.Certificate | str) -> RenewalInfo:
        """RFC 9773 renewal information for a certificate (or a CertID string)."""
        base = (await self.directory()).renewal_info
        if not base:
            raise AcmeClientError.make(
                "unsupported", f"{self.directory_url} offers no renewalInfo", 400
            )
        cert_id = cert if isinstance(cert, str) else ari.cert_id(cert)
        url = f"{base.rstrip('/')}/{cert_id}"
        response = await self.get(url)
        info = RenewalInfo.from_json(self._json(response), url)
        info.retry_after = retry_after_seconds(response)
        return info

    # ---- certdepot: download extension (docs/protocol.md §4) ----------------------------------

    async def download_certificate(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        pin_root: str | bytes | x509.Certificate | Sequence[x509.Certificate] | None = None,
        solver: ChallengeSolver | None = None,
        curve: str = "P-256",
        max_wait: float | None = None,
    ) -> tuple[str, crypto.PrivateKey]:
        """Fetch an existing certificate and its private key from a certdepot repository.

        The key travels as a JWE to a one-time ephemeral key; it is checked to match the
        leaf, and the chain to lead to ``pin_root`` when given. ``solver`` answers pending
        authorizations (proof of control) if the policy asks for it.
        """
        directory = await self.directory()
        if not directory.meta.download_enabled:
            raise AcmeClientError.make(
                "unsupported", f"{self.directory_url} does not offer certificate download", 400
            )
        order = await self.new_order(identifiers, extra={"download": True})
        if order.status == Status.PENDING:
            if solver is None:
                raise AcmeProblem(
                    "unauthorized",
                    f"order {order.url} needs proof of control of"
                    f" {', '.join(order.dns_names())}; pass a solver",
                )
            order = await self.solve(order, solver, max_wait=max_wait)
        elif order.status != Status.READY and order.status != Status.VALID:
            order = await self.poll_order(order, max_wait=max_wait)
        if order.status == Status.INVALID:
            raise order.error or AcmeProblem(
                "unauthorized", f"download order {order.url} is invalid"
            )
        ephemeral, public = keywrap.generate_ephemeral(curve)
        if order.status != Status.VALID:
            order = await self.finalize(order, payload={"ephemeral-jwk": public}, max_wait=max_wait)
        if not order.certificate or not isinstance(order.get("private-key"), str):
            raise AcmeClientError.make(
                "badResponse", f"valid order {order.url} lacks certificate or private-key"
            )
        chain = (await self.fetch_certificate(order.certificate, alternates=False)).pem
        response = await self.post_as_get(order["private-key"], accept=keywrap.MEDIA_TYPE)
        if not response.headers.get("content-type", "").startswith(keywrap.MEDIA_TYPE):
            raise AcmeClientError.make(
                "badResponse", f"{order['private-key']} did not answer application/jose"
            )
        try:
            key = keywrap.unwrap_private_key(response.text, ephemeral)
        except keywrap.KeyWrapError as exc:
            raise AcmeClientError.make("badResponse", f"{order['private-key']}: {exc}") from None
        certs = crypto.parse_pem_chain(chain)
        if not crypto.public_key_matches(key, certs[0]):
            raise AcmeClientError.make(
                "keyMismatch", f"the key from {order['private-key']} does not match the certificate"
            )
        if pin_root is not None:
            try:
                crypto.verify_chain(certs, _root_list(pin_root))
            except crypto.ChainError as exc:
                raise AcmeClientError.make(
                    "untrustedChain", f"{order.certificate}: {exc}"
                ) from None
        return chain, key

    # ---- certdepot: delegation (RFC 9115, docs/protocol.md §5) --------------------------------

    async def list_delegations(self) -> list[str]:
        """URLs of the delegations this account may use."""
        account = await self.get_account()
        if not account.delegations:
            raise AcmeClientError.make(
                "unsupported", f"account {account.url} has no delegations list", 400
            )
        doc = self._json(await self.post_as_get(account.delegations))
        urls = doc.get("delegations") if isinstance(doc, dict) else None
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise AcmeClientError.make(
                "badResponse", f"{account.delegations} is not a delegation list"
            )
        return list(urls)

    async def get_delegation(self, url: str) -> Delegation:
        """One delegation object (its CSR template and CNAME map)."""
        return Delegation.from_json(self._json(await self.post_as_get(url)), url)

    async def delegated_order(
        self,
        delegation_url: str,
        csr_der: bytes,
        *,
        identifiers: Iterable[Identifier | str] | None = None,
        extra: Mapping[str, Any] | None = None,
        max_wait: float | None = None,
    ) -> Order:
        """Order under a delegation and finalize with ``csr_der``; returns the valid order.

        The identifiers default to the CSR's DNS names.
        """
        names = (
            list(identifiers)
            if identifiers is not None
            else crypto.csr_dns_names(crypto.load_csr(csr_der))
        )
        order = await self.new_order(names, extra={"delegation": delegation_url, **(extra or {})})
        if order.status == Status.PENDING:
            order = await self.poll_order(order, max_wait=max_wait)
        if order.status != Status.READY:
            raise order.error or AcmeProblem(
                "orderNotReady", f"delegated order {order.url} is {order.status}"
            )
        return await self.finalize(order, csr_der, max_wait=max_wait)
