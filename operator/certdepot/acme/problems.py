"""RFC 8555 §6.7 problem documents: the one exception type both sides raise and catch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACME_NS = "urn:ietf:params:acme:error:"

# Default HTTP status per error type: the single place that maps problems to status codes.
_STATUS: dict[str, int] = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 400,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 400,
    "incorrectResponse": 400,
    "invalidContact": 400,
    "invalidProfile": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
    # RFC 9115 (delegation) and RFC 8739 (STAR)
    "unknownDelegation": 403,
    "autoRenewalCanceled": 403,
    "autoRenewalExpired": 403,
    "autoRenewalCancellationInvalid": 400,
    "autoRenewalRevocationNotSupported": 403,
    # RFC 9773 (ARI)
    "alreadyReplaced": 409,
}


@dataclass
class AcmeProblem(Exception):
    """An ACME error: both the data of a problem document and a raisable exception.

    ``type`` may be a short name (``"badNonce"``) or a full URN; it is stored as the URN.
    """

    type: str
    detail: str = ""
    status: int | None = None
    identifier: Mapping[str, str] | None = None
    subproblems: Sequence[AcmeProblem] = field(default_factory=tuple)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Seconds from the response's ``Retry-After`` header (rateLimited, 503...), if any.
    #: Transport metadata, not part of the problem document: keyword-only so it never takes
    #: a positional slot, left out of equality and out of :meth:`to_json`.
    retry_after: float | None = field(default=None, kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if ":" not in self.type:
            self.type = ACME_NS + self.type
        if self.status is None:
            self.status = _STATUS.get(self.short_type, 400)
        super().__init__(self.type, self.detail)

    @property
    def short_type(self) -> str:
        """The name after the ACME namespace, or the whole type for non-ACME types."""
        return self.type.removeprefix(ACME_NS)

    def __str__(self) -> str:
        return f"{self.short_type}: {self.detail}" if self.detail else self.short_type

    def to_json(self) -> dict[str, Any]:
        """The problem document (``application/problem+json``)."""
        doc: dict[str, Any] = {"type": self.type, "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        if self.identifier:
            doc["identifier"] = dict(self.identifier)
        if self.subproblems:
            doc["subproblems"] = [p.to_json() for p in self.subproblems]
        doc.update(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], status: int | None = None) -> AcmeProblem:
        """Parse a problem document; tolerant of missing fields, never raises KeyError."""
        known = {"type", "detail", "status", "identifier", "subproblems"}
        raw_status = doc.get("status")
        subs = doc.get("subproblems") or []
        return cls(
            type=str(doc.get("type") or "about:blank"),
            detail=str(doc.get("detail") or ""),
            status=raw_status if isinstance(raw_status, int) else status,
            identifier=doc.get("identifier") if isinstance(doc.get("identifier"), dict) else None,
            subproblems=tuple(cls.from_json(s) for s in subs if isinstance(s, dict)),
            extra={k: v for k, v in doc.items() if k not in known},
        )
