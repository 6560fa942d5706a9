"""The RFC 8555 client (with EAB, RFC 9773 ARI and the profiles draft) over AcmeTransport.

Accounts (new, lookup, update, deactivate, key change), orders, authorizations and
challenges (``solve`` with a ``ChallengeSolver``), finalize, certificate download with
alternates, revocation and renewalInfo. Polling (``poll_order``, ``poll_authorization``)
honours ``Retry-After`` within ``[poll_interval, max_poll_interval]`` and gives up with
``AcmeTimeout`` after ``poll_timeout``. certdepot's extensions are in ``extensions.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certdepot.acme import ari, crypto, jws
from certdepot.acme.challenges import key_authorization
from certdepot.acme.client_errors import AcmeTimeout, BadResponse, Unsupported
from certdepot.acme.eab import create_eab
from certdepot.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Identifier,
    Order,
    RenewalInfo,
    Status,
)
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339
from certdepot.acme.transport import AcmeTransport, parse_links, retry_after_seconds

PEM_CHAIN = "application/pem-certificate-chain"


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



class Rfc8555Client(AcmeTransport):
    """RFC 8555 resources of one account on one server."""

    def key_authorization(self, challenge: Challenge) -> str:
        """The key authorization for a challenge under this account key."""
        if not challenge.token:
            raise BadResponse(f"challenge {challenge.url} has no token")
        return key_authorization(challenge.token, self.jwk)

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
            raise BadResponse(f"{directory.new_account} returned no account Location")
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
            raise Unsupported(f"{self.directory_url} offers no keyChange")
        account = self._require_account()
        inner = jws.sign({"account": account, "oldKey": self.jwk}, new_key, url=url)
        await self.post(url, inner)
        self.key = new_key

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
            raise BadResponse(f"{directory.new_order} returned no order Location")
        return Order.from_json(self._json(response), urljoin(directory.new_order, location))

    async def get_order(self, order: Order | str) -> Order:
        """Refresh an order."""
        url = order if isinstance(order, str) else order.url
        if not url:
            raise BadResponse("order has no URL")
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
                raise AcmeTimeout(f"{url} still {obj.status!r} after polling for {limit:g}s")
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
            raise BadResponse(f"{url} did not return a PEM certificate chain")
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
            raise Unsupported(f"{self.directory_url} offers no revokeCert")
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
            raise Unsupported(f"{self.directory_url} offers no renewalInfo")
        cert_id = cert if isinstance(cert, str) else ari.cert_id(cert)
        url = f"{base.rstrip('/')}/{cert_id}"
        response = await self.get(url)
        info = RenewalInfo.from_json(self._json(response), url)
        info.retry_after = retry_after_seconds(response)
        return info
