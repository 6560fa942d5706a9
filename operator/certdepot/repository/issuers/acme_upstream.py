"""An upstream RFC 8555 CA (Let's Encrypt, ZeroSSL, step-ca, ...; Pebble in tests).

The repository is the domain owner: it holds one account per issuer (key sealed in the
store, shared by all replicas), solves the challenges itself (http-01 on its own listener,
dns-01 by RFC 2136) and asks the CA for renewal information (RFC 9773) and ``replaces``.
"""

from __future__ import annotations

import logging
import time

from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient, ChallengeSolver
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import TransportError
from certdepot.repository.config import AcmeIssuer
from certdepot.repository.issuers import IssueRequest, IssuerError
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.solvers import Dns01Solver, Http01Solver
from certdepot.repository.store import Store

log = logging.getLogger("certdepot.repository.issuers.acme")

UPSTREAM_BAD_NONCE_RETRIES = 3


class AcmeUpstream:
    can_issue = True

    def __init__(self, cfg: AcmeIssuer, store: Store, vault: KeyVault) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.store = store
        self.vault = vault
        self.solver: ChallengeSolver = (Dns01Solver(cfg.challenge)
                                        if cfg.challenge.type == "dns-01"
                                        else Http01Solver(store))
        self._key: crypto.PrivateKey | None = None
        self._ari: dict[str, tuple[tuple[float, float] | None, float]] = {}

    def _blob(self, what: str) -> str:
        return f"acme-issuer:{self.name}:{what}"

    def account_key(self) -> crypto.PrivateKey:
        if self._key is None:
            label = self._blob("key")
            fresh = crypto.generate_private_key("ec-p256")
            # First replica to store a key wins; everyone uses the stored one.
            self.store.put_blob(label, self.vault.seal(crypto.private_key_to_pkcs8_der(fresh),
                                                       label), replace=False)
            blob = self.store.get_blob(label)
            assert blob is not None
            self._key = crypto.load_private_key(self.vault.open(blob, label))
        return self._key

    def _client(self) -> AcmeClient:
        url = self.store.get_blob(self._blob("account-url"))
        verify: bool | str = str(self.cfg.ca_bundle) if self.cfg.ca_bundle else True
        # A renewal runs unattended: two nonce rejections in a row (Pebble rejects 5 % on
        # purpose; public CAs do so under load) must not fail a whole order, so the upstream
        # client re-sends a little more than the one retry interactive clients get.
        return AcmeClient(self.cfg.directory, self.account_key(),
                          account_url=url.decode() if url else None, verify=verify,
                          poll_timeout=300.0, bad_nonce_retries=UPSTREAM_BAD_NONCE_RETRIES)

    async def _ensure_account(self, client: AcmeClient) -> None:
        if client.account_url:
            return
        eab = (self.cfg.eab.kid, self.cfg.eab.key) if self.cfg.eab else None
        account = await client.new_account(contact=self.cfg.contact, eab=eab)
        url = account.url or ""
        self.store.put_blob(self._blob("account-url"), url.encode())
        log.info("issuer %s: account %s", self.name, url)

    async def issue(self, request: IssueRequest) -> str:
        try:
            return await self._issue(request)
        except TransportError as exc:
            raise IssuerError(f"issuer {self.name}: {exc}") from exc
        except AcmeProblem as exc:
            if exc.short_type != "accountDoesNotExist":
                raise IssuerError(f"issuer {self.name}: {exc}") from None
        # The CA forgot our account (restarted test CA, account removed, directory moved
        # under the same issuer name): register again, once, instead of failing forever.
        log.warning("issuer %s: the CA no longer knows our account; registering again",
                    self.name)
        self.store.delete_blob(self._blob("account-url"))
        try:
            return await self._issue(request)
        except (AcmeProblem, TransportError) as exc:
            raise IssuerError(f"issuer {self.name}: {exc}") from None

    async def _issue(self, request: IssueRequest) -> str:
        async with self._client() as client:
            await self._ensure_account(client)
            profile = request.profile or self.cfg.profile
            replaces = request.replaces
            if replaces and not (await client.directory()).renewal_info:
                replaces = None
            try:
                order = await client.new_order(request.dns_names, profile=profile,
                                               replaces=replaces)
            except AcmeProblem as exc:
                if not replaces or exc.short_type not in ("alreadyReplaced", "malformed"):
                    raise
                # The CA will not link this renewal to its predecessor: order plainly.
                log.info("issuer %s: replaces refused (%s); ordering without it",
                         self.name, exc.short_type)
                order = await client.new_order(request.dns_names, profile=profile)
            order = await client.solve(order, self.solver)
            order = await client.finalize(order, request.csr_der)
            if not order.certificate:
                raise IssuerError(f"issuer {self.name}: valid order without certificate")
            chains = await client.fetch_certificate(order.certificate, alternates=False)
            return chains.pem

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        # Ask again only after the CA's Retry-After (RFC 9773 §4.3), not on every pass.
        key = crypto.serial_hex(cert)
        cached = self._ari.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        async with self._client() as client:
            if not (await client.directory()).renewal_info:
                window = None
                retry = 3600.0
            else:
                info = await client.renewal_info(cert)
                window = (info.start.timestamp(), info.end.timestamp())
                retry = min(max(info.retry_after or 3600.0, 60.0), 86400.0)
        self._ari[key] = (window, time.monotonic() + retry)
        return window

    async def revoke(self, cert: x509.Certificate, reason: int) -> str:
        """RFC 8555 §7.6 as the account that ordered it (upstream_revocation.Revoker)."""
        async with self._client() as client:
            await self._ensure_account(client)
            try:
                await client.revoke(cert, reason)
            except TransportError as exc:
                raise IssuerError(f"issuer {self.name}: {exc}") from exc
            except AcmeProblem as exc:
                if exc.short_type == "alreadyRevoked":
                    return f"already revoked at {self.cfg.directory}"
                raise IssuerError(f"issuer {self.name}: {exc}") from None
        log.info("issuer %s: serial %s revoked upstream (reason %d)", self.name,
                 crypto.serial_hex(cert), reason)
        return f"revoked at {self.cfg.directory}"

    async def close(self) -> None:
        return None

