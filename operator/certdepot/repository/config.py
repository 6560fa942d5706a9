"""Repository configuration: one YAML file, validated with pydantic at start.

An invalid file must stop the process with a message naming the file, the key path and the
problem, so :func:`load_config` turns every pydantic error into one :class:`ConfigError`.
"""

from __future__ import annotations

import base64
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from certdepot.repository import configfile

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"45s"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"not a duration (use e.g. 90d, 12h, 30m, 45s): {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]


class ConfigError(Exception):
    """Configuration is unusable; the message names file, key path and problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class HttpsListener(_Model):
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


class HttpListener(_Model):
    address: str


class Listeners(_Model):
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


class Limits(_Model):
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
    # An RFC 9773 CertID: base64url(AKI) "." base64url(serial), about 60 characters.
    max_replaces_length: int = Field(default=256, ge=16)


class Storage(_Model):
    # sqlite:///path.db (default file), sqlite:// (in memory), postgresql+psycopg://...
    url: str | None = None
    # The URL read from a file (a mounted Secret), for URLs that carry a password.
    url_file: Path | None = None

    @model_validator(mode="after")
    def _load(self) -> Storage:
        if self.url is not None and self.url_file is not None:
            raise ValueError("give url or urlFile, not both")
        if self.url_file is not None:
            self.url = _secret_from(None, self.url_file, "url")
        elif self.url is None:
            self.url = "sqlite:///certdepot.db"
        return self

    @property
    def database_url(self) -> str:
        assert self.url is not None
        return self.url


class KeyEncryptionKey(_Model):
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


def _secret_from(value: str | None, path: Path | None, what: str) -> str:
    """A credential given inline or (for Kubernetes Secrets mounted as files) by path."""
    if (value is None) == (path is None):
        raise ValueError(f"give exactly one of {what} and {what}File")
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{what}File: cannot read {path}: {exc.strerror}") from None
    assert value is not None
    return value


class EabCredentials(_Model):
    kid: str
    hmac_key: str | None = None
    hmac_key_file: Path | None = None

    @model_validator(mode="after")
    def _load(self) -> EabCredentials:
        self.hmac_key = _secret_from(self.hmac_key, self.hmac_key_file, "hmacKey")
        return self

    @property
    def key(self) -> str:
        assert self.hmac_key is not None
        return self.hmac_key


class Tsig(_Model):
    name: str
    secret: str | None = None
    secret_file: Path | None = None
    algorithm: str = "hmac-sha256"

    @model_validator(mode="after")
    def _load(self) -> Tsig:
        self.secret = _secret_from(self.secret, self.secret_file, "secret")
        return self


class ChallengeSolver(_Model):
    type: Literal["http-01", "dns-01"] = "http-01"
    # dns-01: RFC 2136 updates to this authoritative server
    server: str | None = None
    port: int = 53
    zone: str | None = None
    tsig: Tsig | None = None
    propagation_seconds: float = 0.0

    @model_validator(mode="after")
    def _dns_fields(self) -> ChallengeSolver:
        if self.type == "dns-01" and (not self.server or not self.zone):
            raise ValueError("dns-01 needs server and zone")
        return self


class AcmeIssuer(_Model):
    name: str
    type: Literal["acme"]
    directory: str
    ca_bundle: Path | None = None
    eab: EabCredentials | None = None
    profile: str | None = None
    contact: list[str] = Field(default_factory=list)
    challenge: ChallengeSolver = Field(default_factory=ChallengeSolver)
    # Longest lifetime this CA issues with the configured profile; used to reject
    # delegations whose maximum it cannot meet.
    max_lifetime: Duration | None = None


class LocalCaRoot(_Model):
    cert: Path
    key: Path


class LocalCaIssuer(_Model):
    name: str
    type: Literal["local-ca"]
    # Absent: generated once and kept (encrypted) in the store.
    root: LocalCaRoot | None = None
    common_name: str = "certdepot local CA"
    lifetime: Duration = timedelta(days=90)


class ImportedIssuer(_Model):
    name: str
    type: Literal["imported"]
    warn_before: Duration = timedelta(days=14)


Issuer = Annotated[AcmeIssuer | LocalCaIssuer | ImportedIssuer, Field(discriminator="type")]


def _name(value: str) -> str:
    # The one normaliser (IDNA 2008, lower-case, no trailing dot) for configured names too,
    # so they compare equal to what clients send.
    from certdepot.acme import dnsname

    try:
        return dnsname.normalize(value)
    except dnsname.InvalidName as exc:
        raise ValueError(f"{value!r}: {exc}") from None


def _pattern(value: str) -> str:
    from certdepot.acme import dnsname

    try:
        return dnsname.normalize_pattern(value)
    except dnsname.InvalidName as exc:
        raise ValueError(f"{value!r}: {exc}") from None


class ManagedCertificate(_Model):
    name: str
    dns_names: list[str] = Field(min_length=1)
    issuer: str
    renew_before: Duration | None = None
    lifetime: Duration | None = None
    key_type: KeyType = "ec-p256"
    profile: str | None = None
    # Clients that are not granted it may still download it after proving control of
    # every name (http-01 / dns-01, validated by the repository).
    download_by_proof: bool = False

    @field_validator("dns_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return [_name(n) for n in names]


class Delegation(_Model):
    """RFC 9115 delegation offered to one tenant."""

    name: str
    csr_template: dict[str, Any]
    # fnmatch-style patterns with '*' matching exactly one label: cdn-*.example.com
    name_patterns: list[str] = Field(default_factory=list)
    max_lifetime: Duration = timedelta(days=7)
    issuer: str
    profile: str | None = None
    cname_map: dict[str, str] | None = None
    allow_certificate_get: bool = False

    @field_validator("name_patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        return [_pattern(p) for p in patterns]

    @field_validator("csr_template")
    @classmethod
    def _template(cls, template: dict[str, Any]) -> dict[str, Any]:
        from certdepot.acme.csr_template import validate_template

        errors = validate_template(template)
        if errors:
            raise ValueError("invalid csrTemplate: " + "; ".join(errors))
        return template


class Tenant(_Model):
    name: str
    download: list[str] = Field(default_factory=list)
    # Managed certificates this tenant may revoke (ACME revokeCert signed by its account):
    # the repository then rotates them (rotation.py). Holding a downloaded key gives no
    # such right.
    revoke: list[str] = Field(default_factory=list)
    issue: list[str] = Field(default_factory=list)
    issuer: str | None = None
    delegations: list[Delegation] = Field(default_factory=list)

    @field_validator("issue")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        return [_pattern(p) for p in patterns]


class Admin(_Model):
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


class Validation(_Model):
    """How the repository checks a client's http-01 / dns-01 proof of control."""

    http_port: int = 80
    # Connect to this address for every name instead of resolving it (tests, split DNS).
    resolve_to: str | None = None
    dns_server: str | None = None
    dns_port: int = 53
    timeout_seconds: float = 10.0


class KubernetesResources(_Model):
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


class Config(_Model):
    # The file this configuration was read from (load_config); the live reload watches it.
    _source: Path | None = PrivateAttr(default=None)
    base_url: str
    validation: Validation = Field(default_factory=Validation)
    # Shortest STAR (RFC 8739) certificate lifetime a client may ask for.
    star_min_lifetime: Duration = timedelta(hours=1)
    # RFC 8739 max-duration (advertised in the directory): the longest span from a STAR
    # order's start to its end-date.
    star_max_duration: Duration = timedelta(days=365)
    # How far a certificate's notBefore may lie from the repository's clock, either way:
    # requests that backdate (or post-date) further are refused (validity.py).
    clock_skew_allowance: Duration = timedelta(minutes=5)
    # How long an ARI response tells clients to wait before asking again.
    ari_retry_after: Duration = timedelta(seconds=30)  # the operator follows it: it bounds
    # how fast a rotation reaches every cluster
    listeners: Listeners
    storage: Storage = Field(default_factory=Storage)
    key_encryption_key: KeyEncryptionKey
    # false: accounts may register without EAB. They belong to no tenant and get no
    # policy: all they can do is download a downloadByProof certificate after proving
    # control of its names (docs/operations.md, "Accounts without EAB").
    eab_required: bool = True
    nonce_lifetime: Duration = timedelta(minutes=10)
    max_body_bytes: int = 65536
    limits: Limits = Field(default_factory=Limits)
    renew_check_interval: Duration = timedelta(seconds=60)
    issuers: list[Issuer] = Field(default_factory=list)
    certificates: list[ManagedCertificate] = Field(default_factory=list)
    tenants: list[Tenant] = Field(default_factory=list)
    default_issuer: str | None = None
    admin: Admin | None = None  # the admin HTTP API (routes/admin.py); None: off
    # How often the file is checked for changes (livereload.py); 0 turns reloading off.
    config_reload_interval: Duration = timedelta(seconds=5)
    # Largest configuration file read, at start and at each reload (configfile.py).
    config_max_bytes: int = Field(default=configfile.MAX_BYTES, ge=1024)
    kubernetes: KubernetesResources = Field(default_factory=KubernetesResources)

    @property
    def source(self) -> Path | None:
        return self._source

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _references(self) -> Config:
        self.check_references()
        return self

    def check_references(self) -> None:
        """Names unique, every issuer and certificate named exists, delegations fit their
        issuer: ValueError otherwise (also asked of a merge with resources: resources.py)."""
        names = [i.name for i in self.issuers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"issuers: duplicate name(s) {sorted(dup)}")
        for what, items in (("certificates", [c.name for c in self.certificates]),
                            ("tenants", [t.name for t in self.tenants])):
            dup = {n for n in items if items.count(n) > 1}
            if dup:
                raise ValueError(f"{what}: duplicate name(s) {sorted(dup)}")
        for i, t in enumerate(self.tenants):
            dl_names = [d.name for d in t.delegations]
            if len(set(dl_names)) != len(dl_names):
                raise ValueError(f"tenants.{i}.delegations: duplicate names")
        issuers = {i.name: i for i in self.issuers}

        def need(path: str, name: str | None) -> None:
            if name is not None and name not in issuers:
                raise ValueError(f"{path}: unknown issuer {name!r} (have {sorted(issuers)})")

        need("defaultIssuer", self.default_issuer)
        certs = {c.name for c in self.certificates}
        for i, c in enumerate(self.certificates):
            need(f"certificates.{i}.issuer", c.issuer)
        for i, t in enumerate(self.tenants):
            need(f"tenants.{i}.issuer", t.issuer)
            for what, listed in (("download", t.download), ("revoke", t.revoke)):
                for d in listed:
                    if d not in certs:
                        raise ValueError(f"tenants.{i}.{what}: unknown certificate {d!r}")
            for j, dl in enumerate(t.delegations):
                need(f"tenants.{i}.delegations.{j}.issuer", dl.issuer)
                iss = issuers[dl.issuer]
                limit = iss.max_lifetime if isinstance(iss, AcmeIssuer) else None
                if isinstance(iss, ImportedIssuer):
                    raise ValueError(f"tenants.{i}.delegations.{j}.issuer: an imported issuer "
                                     "cannot issue delegated certificates")
                if limit is None and isinstance(iss, AcmeIssuer):
                    raise ValueError(
                        f"tenants.{i}.delegations.{j}: issuer {iss.name!r} must declare "
                        f"maxLifetime so the delegation's maximum "
                        f"({dl.max_lifetime}) can be checked")
                if limit is not None and limit > dl.max_lifetime:
                    raise ValueError(
                        f"tenants.{i}.delegations.{j}.maxLifetime: issuer {iss.name!r} "
                        f"issues up to {limit}, more than the delegation's maximum "
                        f"{dl.max_lifetime}")

    def issuer(self, name: str) -> AcmeIssuer | LocalCaIssuer | ImportedIssuer:
        for i in self.issuers:
            if i.name == name:
                return i
        raise KeyError(name)

    def certificate(self, name: str) -> ManagedCertificate | None:
        return next((c for c in self.certificates if c.name == name), None)

    def tenant(self, name: str | None) -> Tenant | None:
        return next((t for t in self.tenants if t.name == name), None)


def _loc(loc: tuple[int | str, ...]) -> str:
    # Drop pydantic's discriminator tags (e.g. 'acme') so the path matches the YAML.
    parts = [str(p) for p in loc if p not in ("acme", "local-ca", "imported")]
    return ".".join(parts) or "(top level)"


def parse_config(data: Any, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines)) from None


def load_config(path: Path, max_bytes: int | None = None) -> Config:
    """The configuration in the file at ``path``: at most ``max_bytes`` (a reload passes the
    running ``configMaxBytes``), or at start at most what the file's own ``configMaxBytes``
    says (read up to configfile.START_MAX_BYTES first)."""
    try:
        raw = configfile.read_bytes(path, max_bytes or configfile.START_MAX_BYTES)
    except configfile.ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    return config_from_bytes(raw, path)


def config_from_bytes(raw: bytes, path: Path) -> Config:
    """The configuration in ``raw``, the content of the file at ``path``."""
    try:
        data = configfile.parse_yaml(raw, path)
    except configfile.ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping")
    config = parse_config(data, str(path))
    if len(raw) > config.config_max_bytes:
        raise ConfigError(f"{path}: larger than configMaxBytes ({config.config_max_bytes})")
    config._source = path
    return config
