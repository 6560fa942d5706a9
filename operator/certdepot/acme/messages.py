"""Typed ACME resources (RFC 8555 §7.1, RFC 9773, the profiles draft, RFC 9115).

Every resource is a dataclass with ``from_json(doc, url=None)`` and ``to_json()``. Parsing
is tolerant: unknown members are kept in ``extra`` (and come back out of ``to_json``), so
extension fields such as ``download``, ``private-key`` or ``delegation`` survive a round trip
and are readable with ``obj.get("download")`` / ``obj["private-key"]``. A member with the
wrong type, or a required one missing, raises ``AcmeProblem(malformed)`` naming it, never a
``KeyError``.

Resources: ``Identifier``, ``Challenge``, ``Authorization``, ``Order``, ``Account``,
``Directory`` (with ``DirectoryMeta``), ``RenewalInfo``, ``Delegation``. Status values are
plain strings (constants in ``Status``). Times are aware ``datetime`` objects, written
as RFC 3339 UTC (``...Z``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from certdepot.acme import fields
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339
from certdepot.acme.wire import (
    Resource,
    member,
    missing_list,
    problem_member,
    require_object,
    str_list,
)
from certdepot.acme.wire import (
    parse_time as parse_time,  # re-exported: the repository parses times with it
)


class Status:
    """Status strings used by ACME objects."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"
    EXPIRED = "expired"
    CANCELED = fields.STATUS_CANCELED  # RFC 8739: an auto-renewal order the client stopped


@dataclass
class Identifier(Resource):
    """``{"type": "dns", "value": "example.com"}``."""

    type: str
    value: str
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"type", "value"})

    @classmethod
    def dns(cls, name: str) -> Identifier:
        """A DNS identifier (lower-cased, no trailing dot)."""
        return cls("dns", name.lower().rstrip("."))

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Identifier:
        d = require_object(doc, "identifier")
        return cls(
            type=member(d, "type", str, "identifier", True) or "",
            value=member(d, "value", str, "identifier", True) or "",
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "type": self.type, "value": self.value}

    def key(self) -> tuple[str, str]:
        """A hashable, case-normalised form for set comparisons."""
        return (self.type, self.value.lower())


@dataclass
class Challenge(Resource):
    """A challenge object (§7.1.5, §8)."""

    type: str
    url: str
    status: str
    token: str | None = None
    validated: dt.datetime | None = None
    error: AcmeProblem | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"type", "url", "status", "token", "validated", "error"}
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Challenge:
        d = require_object(doc, "challenge")
        return cls(
            type=member(d, "type", str, "challenge", True) or "",
            url=member(d, "url", str, "challenge") or url or "",
            status=member(d, "status", str, "challenge", True) or "",
            token=member(d, "token", str, "challenge"),
            validated=parse_time(d.get("validated"), "challenge validated"),
            error=problem_member(d, "error", "challenge"),
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra,
            "type": self.type,
            "url": self.url,
            "status": self.status,
        }
        if self.token is not None:
            doc["token"] = self.token
        if self.validated is not None:
            doc["validated"] = rfc3339(self.validated, fraction=True)
        if self.error is not None:
            doc["error"] = self.error.to_json()
        return doc


@dataclass
class Authorization(Resource):
    """An authorization object (§7.1.4)."""

    identifier: Identifier
    status: str
    challenges: list[Challenge] = field(default_factory=list)
    expires: dt.datetime | None = None
    wildcard: bool = False
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"identifier", "status", "challenges", "expires", "wildcard"}
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Authorization:
        d = require_object(doc, "authorization")
        challenges = member(d, "challenges", list, "authorization") or []
        return cls(
            identifier=Identifier.from_json(member(d, "identifier", dict, "authorization", True)),
            status=member(d, "status", str, "authorization", True) or "",
            challenges=[Challenge.from_json(c) for c in challenges],
            expires=parse_time(d.get("expires"), "authorization expires"),
            wildcard=bool(member(d, "wildcard", bool, "authorization")),
            url=url,
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra,
            "identifier": self.identifier.to_json(),
            "status": self.status,
            "challenges": [c.to_json() for c in self.challenges],
        }
        if self.expires is not None:
            doc["expires"] = rfc3339(self.expires, fraction=True)
        if self.wildcard:
            doc["wildcard"] = True
        return doc

    def challenge(self, type_: str) -> Challenge | None:
        """The first challenge of a type (``http-01``, ``dns-01``...), if offered."""
        return next((c for c in self.challenges if c.type == type_), None)


@dataclass
class Order(Resource):
    """An order object (§7.1.3) with ``profile`` (profiles draft) and ``replaces`` (RFC 9773)."""

    status: str
    identifiers: list[Identifier]
    authorizations: list[str] = field(default_factory=list)
    finalize: str = ""
    certificate: str | None = None
    expires: dt.datetime | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    error: AcmeProblem | None = None
    profile: str | None = None
    replaces: str | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {
            "status", "identifiers", "authorizations", "finalize", "certificate", "expires",
            "notBefore", "notAfter", "error", "profile", "replaces",
        }
    )  # fmt: skip

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Order:
        d = require_object(doc, "order")
        idents = member(d, "identifiers", list, "order", True) or []
        return cls(
            status=member(d, "status", str, "order", True) or "",
            identifiers=[Identifier.from_json(i) for i in idents],
            authorizations=str_list(d, "authorizations", "order"),
            finalize=member(d, "finalize", str, "order") or "",
            certificate=member(d, "certificate", str, "order"),
            expires=parse_time(d.get("expires"), "order expires"),
            not_before=parse_time(d.get("notBefore"), "order notBefore"),
            not_after=parse_time(d.get("notAfter"), "order notAfter"),
            error=problem_member(d, "error", "order"),
            profile=member(d, "profile", str, "order"),
            replaces=member(d, "replaces", str, "order"),
            url=url,
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra,
            "status": self.status,
            "identifiers": [i.to_json() for i in self.identifiers],
            "authorizations": list(self.authorizations),
            "finalize": self.finalize,
        }
        optional: dict[str, Any] = {
            "certificate": self.certificate,
            "expires": self.expires and rfc3339(self.expires, fraction=True),
            "notBefore": self.not_before and rfc3339(self.not_before, fraction=True),
            "notAfter": self.not_after and rfc3339(self.not_after, fraction=True),
            "error": self.error and self.error.to_json(),
            "profile": self.profile,
            "replaces": self.replaces,
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc

    def dns_names(self) -> list[str]:
        """The DNS identifier values, in order."""
        return [i.value for i in self.identifiers if i.type == "dns"]


@dataclass
class Account(Resource):
    """An account object (§7.1.2)."""

    status: str
    contact: list[str] = field(default_factory=list)
    terms_of_service_agreed: bool | None = None
    orders: str | None = None
    external_account_binding: dict[str, Any] | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"status", "contact", "termsOfServiceAgreed", "orders", "externalAccountBinding"}
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Account:
        d = require_object(doc, "account")
        return cls(
            status=member(d, "status", str, "account") or Status.VALID,
            contact=str_list(d, "contact", "account"),
            terms_of_service_agreed=member(d, "termsOfServiceAgreed", bool, "account"),
            orders=member(d, "orders", str, "account"),
            external_account_binding=member(d, "externalAccountBinding", dict, "account"),
            url=url,
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.extra, "status": self.status, "contact": list(self.contact)}
        if self.terms_of_service_agreed is not None:
            doc["termsOfServiceAgreed"] = self.terms_of_service_agreed
        if self.orders is not None:
            doc["orders"] = self.orders
        if self.external_account_binding is not None:
            doc["externalAccountBinding"] = self.external_account_binding
        return doc

    @property
    def delegations(self) -> str | None:
        """RFC 9115: URL of the account's delegation list, if the server offers one."""
        value = self.extra.get(fields.DELEGATIONS)
        return value if isinstance(value, str) else None


@dataclass
class DirectoryMeta(Resource):
    """The directory's ``meta`` object, including ``profiles`` and certdepot's flags."""

    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: list[str] = field(default_factory=list)
    #: ``None`` when the server did not say (written back out only when it did, even false).
    external_account_required: bool | None = None
    profiles: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"termsOfService", "website", "caaIdentities", "externalAccountRequired", "profiles"}
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> DirectoryMeta:
        d = require_object(doc, "directory meta")
        profiles = member(d, "profiles", dict, "directory meta") or {}
        return cls(
            terms_of_service=member(d, "termsOfService", str, "directory meta"),
            website=member(d, "website", str, "directory meta"),
            caa_identities=str_list(d, "caaIdentities", "directory meta"),
            external_account_required=member(d, "externalAccountRequired", bool, "directory meta"),
            profiles={str(k): str(v) for k, v in profiles.items()},
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        if self.terms_of_service:
            doc["termsOfService"] = self.terms_of_service
        if self.website:
            doc["website"] = self.website
        if self.caa_identities:
            doc["caaIdentities"] = list(self.caa_identities)
        if self.external_account_required is not None:
            doc["externalAccountRequired"] = self.external_account_required
        if self.profiles:
            doc["profiles"] = dict(self.profiles)
        return doc

    @property
    def download_enabled(self) -> bool:
        """certdepot's certificate download extension (docs/protocol.md §4)."""
        return self.extra.get(fields.DOWNLOAD_ENABLED) is True

    @property
    def delegation_enabled(self) -> bool:
        """RFC 9115 delegation support."""
        return self.extra.get(fields.DELEGATION_ENABLED) is True


@dataclass
class Directory(Resource):
    """The directory object (§7.1.1) plus ``renewalInfo`` (RFC 9773)."""

    new_nonce: str
    new_account: str
    new_order: str
    revoke_cert: str | None = None
    key_change: str | None = None
    new_authz: str | None = None
    renewal_info: str | None = None
    meta: DirectoryMeta = field(default_factory=DirectoryMeta)
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {
            "newNonce",
            "newAccount",
            "newOrder",
            "revokeCert",
            "keyChange",
            "newAuthz",
            "renewalInfo",
            "meta",
        }
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Directory:
        d = require_object(doc, "directory")
        return cls(
            new_nonce=member(d, "newNonce", str, "directory", True) or "",
            new_account=member(d, "newAccount", str, "directory", True) or "",
            new_order=member(d, "newOrder", str, "directory", True) or "",
            revoke_cert=member(d, "revokeCert", str, "directory"),
            key_change=member(d, "keyChange", str, "directory"),
            new_authz=member(d, "newAuthz", str, "directory"),
            renewal_info=member(d, "renewalInfo", str, "directory"),
            meta=DirectoryMeta.from_json(member(d, "meta", dict, "directory") or {}),
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra,
            "newNonce": self.new_nonce,
            "newAccount": self.new_account,
            "newOrder": self.new_order,
        }
        optional = {
            "revokeCert": self.revoke_cert,
            "keyChange": self.key_change,
            "newAuthz": self.new_authz,
            "renewalInfo": self.renewal_info,
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        meta = self.meta.to_json()
        if meta:
            doc["meta"] = meta
        return doc


@dataclass
class RenewalInfo(Resource):
    """A renewalInfo response (RFC 9773 §4.2); ``retry_after`` comes from the HTTP header."""

    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None = None
    retry_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {fields.SUGGESTED_WINDOW, fields.EXPLANATION_URL}
    )

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> RenewalInfo:
        d = require_object(doc, "renewalInfo")
        window = member(d, fields.SUGGESTED_WINDOW, dict, "renewalInfo", True) or {}
        start = parse_time(window.get("start"), "suggestedWindow start")
        end = parse_time(window.get("end"), "suggestedWindow end")
        if start is None or end is None:
            raise AcmeProblem("malformed", "suggestedWindow needs start and end")
        if end < start:
            raise AcmeProblem("malformed", "suggestedWindow ends before it starts")
        return cls(
            start=start,
            end=end,
            explanation_url=member(d, fields.EXPLANATION_URL, str, "renewalInfo"),
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra,
            fields.SUGGESTED_WINDOW: {
                "start": rfc3339(self.start, fraction=True),
                "end": rfc3339(self.end, fraction=True),
            },
        }
        if self.explanation_url:
            doc[fields.EXPLANATION_URL] = self.explanation_url
        return doc

    def is_open(self, now: dt.datetime | None = None) -> bool:
        """Whether the window has started."""
        return (now or dt.datetime.now(dt.UTC)) >= self.start


@dataclass
class Delegation(Resource):
    """An RFC 9115 delegation object: ``csr-template`` and optional ``cname-map``."""

    csr_template: dict[str, Any]
    cname_map: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[frozenset[str]] = frozenset({fields.CSR_TEMPLATE, fields.CNAME_MAP})

    @classmethod
    def from_json(cls, doc: Any, url: str | None = None) -> Delegation:
        d = require_object(doc, "delegation")
        cmap = member(d, fields.CNAME_MAP, dict, "delegation") or {}
        return cls(
            csr_template=dict(member(d, fields.CSR_TEMPLATE, dict, "delegation", True) or {}),
            cname_map={str(k): str(v) for k, v in cmap.items()},
            url=url,
            extra=cls._unknown(d),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.extra, fields.CSR_TEMPLATE: self.csr_template}
        if self.cname_map:
            doc[fields.CNAME_MAP] = dict(self.cname_map)
        return doc


@dataclass
class UrlList(Resource):
    """A list resource: an account's ``orders`` (RFC 8555 §7.1.2.1) or ``delegations``
    (RFC 9115 §2.3.1), one member holding URLs. ``member`` names it."""

    member: str
    urls: list[str] = field(default_factory=list)
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json_member(cls, doc: Any, member: str, url: str | None = None) -> UrlList:
        d = require_object(doc, f"{member} list")
        return cls(
            member=member,
            urls=str_list(d, member, f"{member} list") if member in d else missing_list(member),
            url=url,
            extra={k: v for k, v in d.items() if k != member},
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, self.member: list(self.urls)}
