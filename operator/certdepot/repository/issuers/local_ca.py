"""An embedded CA: private PKI and the zero-setup default, with exact lifetimes.

The root is either supplied (files) or generated once and kept sealed in the store; the
first replica to store it wins, so all replicas sign with the same root.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

import certdepot.repository.issuers.revocation_status as revocation_status
from certdepot.acme import crypto
from certdepot.repository import csrpolicy
from certdepot.repository.config import LocalCaIssuer
from certdepot.repository.issuers import IssueRequest, IssuerError, leafprofile
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def generate_root(common_name: str) -> tuple[crypto.PrivateKey, x509.Certificate]:
    key = crypto.generate_private_key("ec-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


class LocalCa:
    can_issue = True

    def __init__(self, cfg: LocalCaIssuer, store: Store, vault: KeyVault,
                 base_url: str | None = None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.base_url = base_url  # where its CRL and OCSP are served (revocation_status)
        if cfg.root is not None:
            self.key = crypto.load_private_key(cfg.root.key.read_bytes())
            self.root = crypto.load_certificate(cfg.root.cert.read_bytes())
            if not crypto.public_key_matches(self.key, self.root):
                raise IssuerError(f"issuer {cfg.name}: root key does not match root cert")
        else:
            self.key, self.root = self._generated_root(store, vault)
        self.status = revocation_status.StatusPublisher(self.name, self.root, self.key)

    def _generated_root(self, store: Store, vault: KeyVault
                        ) -> tuple[crypto.PrivateKey, x509.Certificate]:
        kname, cname = f"local-ca:{self.name}:key", f"local-ca:{self.name}:cert"
        if store.get_blob(cname) is None:
            key, cert = generate_root(self.cfg.common_name)
            sealed = vault.seal(crypto.private_key_to_pkcs8_der(key), kname)
            # Key first: a cert blob present always has its key stored.
            if store.put_blob(kname, sealed, replace=False):
                store.put_blob(cname, cert.public_bytes(serialization.Encoding.PEM),
                               replace=False)
        for _ in range(50):
            kblob, cblob = store.get_blob(kname), store.get_blob(cname)
            if kblob and cblob:
                return (crypto.load_private_key(vault.open(kblob, kname)),
                        crypto.load_certificate(cblob))
            time.sleep(0.1)  # another replica is between its two writes
        raise IssuerError(f"issuer {self.name}: generated root incomplete in store")

    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    async def issue(self, request: IssueRequest) -> str:
        return self.sign_now(request)

    def sign_now(self, request: IssueRequest) -> str:
        """Sign the CSR (``issuers.SignsNow``): CPU only, well under a millisecond."""
        try:
            csr = crypto.load_csr(request.csr_der)
        except ValueError as exc:
            raise IssuerError(str(exc)) from None
        lifetime = request.lifetime or self.cfg.lifetime
        now = _now()
        if request.not_before is not None:
            now = request.not_before.astimezone(dt.UTC).replace(microsecond=0)
        not_after = now + lifetime
        if request.not_after is not None:
            not_after = request.not_after.astimezone(dt.UTC).replace(microsecond=0)
        if not_after > self.root.not_valid_after_utc:
            raise IssuerError(f"issuer {self.name}: lifetime exceeds the root's validity")
        builder = (
            x509.CertificateBuilder()
            .issuer_name(self.root.subject)
            .public_key(csr.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()),
                           critical=False)
        )
        builder = revocation_status.add_status_urls(builder, self.base_url, self.name)
        if csrpolicy.key_problem(csr) or csrpolicy.usage_problems(csr):
            raise IssuerError(f"issuer {self.name}: the CSR asks for a weak key, CA usages "
                              "or a feature this CA does not issue")
        if not request.dns_names:
            raise IssuerError(f"issuer {self.name}: no DNS names to issue for")
        # Subject, SAN, key usages: from policy and the order's names, never the CSR's.
        builder = leafprofile.apply(builder, csr, request.dns_names)
        cert = builder.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM).decode() + self.root_pem())

    async def suggested_renewal(self, cert: x509.Certificate) -> tuple[float, float] | None:
        return None

    async def revoke(self, cert: x509.Certificate, reason: int) -> str:
        # The revocation row (rotation.py) is what this CA's CRL and OCSP responses list.
        return f"listed by issuer {self.name}'s CRL and OCSP responder"

    async def close(self) -> None:
        return None
