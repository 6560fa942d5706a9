"""certdepot's protocol extensions on top of the RFC 8555 client.

- Certificate download (docs/protocol.md §4): ``download_certificate(identifiers,
  pin_root=None)`` orders with ``download``, finalizes with a one-time ``ephemeral-jwk``,
  fetches the chain and the JWE-wrapped ``private-key``, and checks that the key matches the
  leaf and (with ``pin_root``) that the chain leads to the pinned root.
- Delegation (RFC 9115, docs/protocol.md §5): ``list_delegations()``,
  ``get_delegation(url)`` and ``delegated_order(delegation_url, csr_der)``; STAR orders
  (RFC 8739) are delegated orders with an ``auto-renewal`` member in ``extra``.

Member names come from :mod:`certdepot.acme.fields`, which the repository uses too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509

from certdepot.acme import crypto, fields, keywrap
from certdepot.acme.client_errors import BadResponse, KeyMismatch, Unsupported, UntrustedChain
from certdepot.acme.messages import Delegation, Identifier, Order, Status, UrlList
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.rfc8555 import ChallengeSolver, Rfc8555Client

RootPin = str | bytes | x509.Certificate | Sequence[x509.Certificate]


def _root_list(pin_root: RootPin) -> list[x509.Certificate]:
    if isinstance(pin_root, x509.Certificate):
        return [pin_root]
    if isinstance(pin_root, str | bytes):
        return crypto.parse_pem_chain(pin_root)
    return list(pin_root)


class CertdepotClient(Rfc8555Client):
    """The RFC 8555 client plus certdepot's download and RFC 9115 delegation extensions."""

    # ---- certdepot: download extension (docs/protocol.md §4) ----------------------------------

    async def download_certificate(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        pin_root: RootPin | None = None,
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
            raise Unsupported(f"{self.directory_url} does not offer certificate download")
        order = await self._authorized_download(identifiers, solver, max_wait)
        ephemeral, public = keywrap.generate_ephemeral(curve)
        if order.status != Status.VALID:
            payload = {fields.EPHEMERAL_JWK: public}
            order = await self.finalize(order, payload=payload, max_wait=max_wait)
        key_url = order.get(fields.PRIVATE_KEY)
        if not order.certificate or not isinstance(key_url, str):
            raise BadResponse(
                f"valid order {order.url} lacks certificate or {fields.PRIVATE_KEY}"
            )
        chain = (await self.fetch_certificate(order.certificate, alternates=False)).pem
        key = await self._fetch_wrapped_key(key_url, ephemeral)
        certs = crypto.parse_pem_chain(chain)
        if not crypto.public_key_matches(key, certs[0]):
            raise KeyMismatch(f"the key from {key_url} does not match the certificate")
        if pin_root is not None:
            try:
                crypto.verify_chain(certs, _root_list(pin_root))
            except crypto.ChainError as exc:
                raise UntrustedChain(f"{order.certificate}: {exc}") from exc
        return chain, key

    async def _authorized_download(
        self,
        identifiers: Iterable[Identifier | str],
        solver: ChallengeSolver | None,
        max_wait: float | None,
    ) -> Order:
        """A download order that is ready (or valid): proof of control given if asked."""
        order = await self.new_order(identifiers, extra={fields.DOWNLOAD: True})
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
        return order

    async def _fetch_wrapped_key(
        self, url: str, ephemeral: keywrap.EphemeralKey
    ) -> crypto.PrivateKey:
        """The private key at ``url``, unwrapped from its JWE with the ephemeral key."""
        response = await self.post_as_get(url, accept=keywrap.MEDIA_TYPE)
        if not response.headers.get("content-type", "").startswith(keywrap.MEDIA_TYPE):
            raise BadResponse(f"{url} did not answer application/jose")
        try:
            return keywrap.unwrap_private_key(response.text, ephemeral)
        except keywrap.KeyWrapError as exc:
            # The error names what failed (algorithm, tag...), never key material.
            raise BadResponse(f"{url}: {exc}") from exc

    # ---- certdepot: delegation (RFC 9115, docs/protocol.md §5) --------------------------------

    async def list_delegations(self) -> list[str]:
        """URLs of the delegations this account may use."""
        account = await self.get_account()
        if not account.delegations:
            raise Unsupported(f"account {account.url} has no delegations list")
        doc = self._json(await self.post_as_get(account.delegations))
        try:
            listing = UrlList.from_json_member(doc, fields.DELEGATIONS, account.delegations)
        except AcmeProblem as exc:
            raise BadResponse(f"{account.delegations} is not a delegation list") from exc
        return listing.urls

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
        order = await self.new_order(
            names, extra={fields.DELEGATION: delegation_url, **(extra or {})}
        )
        if order.status == Status.PENDING:
            order = await self.poll_order(order, max_wait=max_wait)
        if order.status != Status.READY:
            raise order.error or AcmeProblem(
                "orderNotReady", f"delegated order {order.url} is {order.status}"
            )
        return await self.finalize(order, csr_der, max_wait=max_wait)
