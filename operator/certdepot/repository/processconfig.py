"""The sections of the repository's configuration that set up the process itself: listeners,
limits, storage, the key-encryption key, the admin API, proof-of-control validation and
the Kubernetes resources watch. The policy (issuers, certificates, tenants, delegations)
is in :mod:`config`, which assembles both into one :class:`config.Config`."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator

from certdepot.repository.configbase import ConfigError, ConfigModel, Duration, secret_from


class HttpsListener(ConfigModel):
    address: str = "127.0.0.1:8443"
    cert: Path | None = None
    key: Path | None = None
    # Generate a self-signed certificate (development, tests, a first look) and write it
    # (not its key) to selfSignedCertFile so clients can trust it. Kept in the store (key
    # sealed) and served again after a restart (listener_tls.py).
    self_signed: bool = False
    self_signed_cert_file: Path | None = None
    self_signed_validity: Duration = timedelta(days=365)
    # A new certificate is made at the first start this close to the stored one's end.
    self_signed_renew_before: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _cert_source(self) -> HttpsListener:
        if self.self_signed and (self.cert or self.key):
            raise ValueError("give either cert+key or selfSigned, not both")
        if not self.self_signed and bool(self.cert) != bool(self.key):
            raise ValueError("cert and key must be given together")
        if self.self_signed_renew_before >= self.self_signed_validity:
            raise ValueError("selfSignedRenewBefore must be shorter than selfSignedValidity")
        return self


class HttpListener(ConfigModel):
    address: str


class Listeners(ConfigModel):
    https: HttpsListener | None = None
    # Plain HTTP: serves the repository API without TLS (behind a TLS-terminating proxy,
    # or in tests) when https is absent.
    http: HttpListener | None = None
    # Plain HTTP for http-01 tokens of the repository's own upstream orders.
    http01: HttpListener | None = None

    @model_validator(mode="after")
    def _some_api_listener(self) -> Listeners:
        if self.https is None and self.http is None:
            raise ValueError("need an https (or plain http) listener for the ACME API")
        return self


class Limits(ConfigModel):
    """What one client may send, hold or keep open (docs/operations.md, "Limits"). The
    connection-level bounds are enforced by the HTTP protocol (httpproto), the rest by
    quotas.py before anything is stored."""

    # From a connection's first byte (or a request's) until its header block is complete;
    # a connection that sends nothing at all is closed after this too.
    header_read_timeout: Duration = timedelta(seconds=10)
    # Request line plus header names and values.
    max_header_bytes: int = Field(default=16384, ge=1024)
    # From the end of the headers until the last body byte.
    body_read_timeout: Duration = timedelta(seconds=30)
    # Open connections from one client address; 0: unbounded (behind a proxy every
    # client has the proxy's address).
    connections_per_client: int = Field(default=256, ge=0)
    identifiers_per_order: int = Field(default=100, ge=1)
    # Accounts created with one EAB credential (one tenant), deactivated ones included.
    accounts_per_eab_key: int = Field(default=100, ge=1)
    # Accounts registered without EAB (eabRequired: false), all clients together,
    # deactivated ones included.
    accounts_without_eab: int = Field(default=10_000, ge=1)
    # Orders still pending or ready (not expired) per account.
    pending_orders_per_account: int = Field(default=300, ge=1)
    # Nonces handed out and not yet used or expired, all clients together: beyond it the
    # oldest are dropped (their holders get badNonce and retry with the fresh one).
    max_outstanding_nonces: int = Field(default=100_000, ge=1000)
    max_profile_length: int = Field(default=64, ge=1)
    # Managed certificates' private keys each repository process keeps decrypted (as
    # PKCS#8 DER) between downloads, least recently used first out; 0: none kept.
    key_cache_entries: int = Field(default=1000, ge=0)
    # An RFC 9773 CertID: base64url(AKI) "." base64url(serial), about 60 characters.
    max_replaces_length: int = Field(default=256, ge=16)


class Storage(ConfigModel):
    # sqlite:///path.db (default file), sqlite:// (in memory), postgresql+psycopg://...
    url: str | None = None
    # The URL read from a file (a mounted Secret), for URLs that carry a password.
    url_file: Path | None = None

    @model_validator(mode="after")
    def _load(self) -> Storage:
        if self.url is not None and self.url_file is not None:
            raise ValueError("give url or urlFile, not both")
        if self.url_file is not None:
            self.url = secret_from(None, self.url_file, "url")
        elif self.url is None:
            self.url = "sqlite:///certdepot.db"
        return self

    @property
    def database_url(self) -> str:
        assert self.url is not None
        return self.url


class KeyEncryptionKey(ConfigModel):
    """Where the 256-bit key that wraps private keys at rest comes from."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KeyEncryptionKey:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def load(self) -> bytes:
        if self.env is not None:
            raw = os.environ.get(self.env)
            if raw is None:
                raise ConfigError(f"keyEncryptionKey.env: environment variable {self.env} unset")
            where = f"environment variable {self.env}"
        else:
            assert self.file is not None
            try:
                raw = self.file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"keyEncryptionKey.file: cannot read {self.file}: "
                                  f"{exc.strerror}") from None
            where = str(self.file)
        try:
            key = base64.b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4), altchars=b"-_")
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(f"keyEncryptionKey: {where} must hold 32 bytes, base64-encoded")
        return key


class Admin(ConfigModel):
    """The admin HTTP API (``/admin/v1/...``), authenticated by a bearer token read from a
    file (a mounted Secret) or an environment variable at every request, so replacing the
    Secret rotates the token without a restart. Absent: the admin API answers 404."""

    token_file: Path | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Admin:
        if (self.token_file is None) == (self.token_env is None):
            raise ValueError("give exactly one of tokenFile and tokenEnv")
        return self

    def token(self) -> str | None:
        """The current token, or None when unreadable or shorter than ADMIN_TOKEN_MIN."""
        if self.token_env is not None:
            value = os.environ.get(self.token_env, "")
        else:
            assert self.token_file is not None
            try:
                value = self.token_file.read_text()
            except OSError:
                return None
        value = value.strip()
        return value if len(value) >= ADMIN_TOKEN_MIN else None


#: A shorter admin token is refused (treated as none): 32 characters of a random token.
ADMIN_TOKEN_MIN = 32


class Validation(ConfigModel):
    """How the repository checks a client's http-01 / dns-01 proof of control."""

    http_port: int = 80
    # Connect to this address for every name instead of resolving it (tests, split DNS).
    resolve_to: str | None = None
    dns_server: str | None = None
    dns_port: int = 53
    timeout_seconds: float = 10.0


class KubernetesResources(ConfigModel):
    """Managed certificates and tenants declared as resources (RepositoryCertificate,
    RepositoryTenant) on the repository's own cluster, merged with this file
    (resources.py, kubewatch.py; docs/operations.md, "Declaring certificates and tenants
    as resources")."""

    resources: bool = False
    # Where the resources and the tenants' EAB Secrets live. Absent: the namespace of the
    # pod's ServiceAccount (in a cluster), else "default".
    namespace: str | None = None
    # Absent: the in-cluster ServiceAccount, else $KUBECONFIG / ~/.kube/config.
    kubeconfig: Path | None = None
    # Every resource is listed again (and its status refreshed: serial, notAfter,
    # consumers, accounts) at least this often; a watch applies changes as they happen.
    resync_interval: Duration = timedelta(seconds=30)
    # At most this many RepositoryCertificates, and as many RepositoryTenants, are read and
    # applied (the first by name, as the API server lists them); more are left out with a
    # warning. Every pass merges and checks each resource against the others, so the count
    # bounds the repository's memory and CPU whatever is written into its namespace.
    max_resources: int = Field(default=5000, ge=1, le=1_000_000)
