"""Repository configuration: one YAML file, validated with pydantic at start.

An invalid file must stop the process with a message naming the file, the key path and the
problem, so :func:`load_config` turns every pydantic error into one :class:`ConfigError`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from certdepot.repository import configfile
from certdepot.repository.configbase import (
    ConfigError,
    ConfigModel,
    Duration,
    KeyType,
    parse_duration,
    secret_from,
)
from certdepot.repository.processconfig import (
    Admin,
    KeyEncryptionKey,
    KubernetesResources,
    Limits,
    Listeners,
    Storage,
    Validation,
)

# Re-exported: callers load a configuration and catch its error from this module.
__all__ = ["Config", "ConfigError", "load_config", "parse_config", "parse_duration"]


class EabCredentials(ConfigModel):
    kid: str
    hmac_key: str | None = None
    hmac_key_file: Path | None = None

    @model_validator(mode="after")
    def _load(self) -> EabCredentials:
        self.hmac_key = secret_from(self.hmac_key, self.hmac_key_file, "hmacKey")
        return self

    @property
    def key(self) -> str:
        assert self.hmac_key is not None
        return self.hmac_key


class Tsig(ConfigModel):
    name: str
    secret: str | None = None
    secret_file: Path | None = None
    algorithm: str = "hmac-sha256"

    @model_validator(mode="after")
    def _load(self) -> Tsig:
        self.secret = secret_from(self.secret, self.secret_file, "secret")
        return self


class ChallengeSolver(ConfigModel):
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


class AcmeIssuer(ConfigModel):
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


class LocalCaRoot(ConfigModel):
    cert: Path
    key: Path


class LocalCaIssuer(ConfigModel):
    name: str
    type: Literal["local-ca"]
    # Absent: generated once and kept (encrypted) in the store.
    root: LocalCaRoot | None = None
    common_name: str = "certdepot local CA"
    lifetime: Duration = timedelta(days=90)


class ImportedIssuer(ConfigModel):
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


class ManagedCertificate(ConfigModel):
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


class Delegation(ConfigModel):
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


class Tenant(ConfigModel):
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


class Config(ConfigModel):
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
    # Repository processes serving the listeners on this host (workers.py); ``serve
    # --workers`` overrides it.
    workers: int = Field(default=1, ge=1, le=64)

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
