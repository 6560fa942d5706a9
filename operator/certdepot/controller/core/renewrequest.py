"""Renewal on request (``kubectl certdepot renew``): an annotation asks, status records the answer.

The plugin sets :data:`ANNOTATION` to the time of the request (RFC 3339); a value the
operator has not yet honoured is *pending*. A pending request makes the next step fetch
(CertificateDownload) or re-issue (DelegatedCertificate) even though the certificate is
still good, and the status of the step that wrote a new certificate records the value as
``lastRenewalRequest``, so the same request is never honoured twice and a later one (a new
timestamp) is honoured again. A failed attempt records nothing: the request stays pending
and the normal backoff retries it. The annotation, unlike spec, does not bump the
generation, so the supervisor also wakes an object when this annotation changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANNOTATION = "certdepot.io/renew-requested-at"
STATUS_FIELD = "lastRenewalRequest"
REASON = "RenewalRequested"


def requested(meta: Mapping[str, Any]) -> str | None:
    """The request the object carries, honoured or not."""
    value = (meta.get("annotations") or {}).get(ANNOTATION)
    return str(value) if value else None


def pending(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """The request not yet honoured, if any."""
    value = requested(meta)
    if value is None or value == status.get(STATUS_FIELD):
        return None
    return value


def record(step_status: Mapping[str, Any], request: str | None) -> dict[str, Any]:
    """The step's status, with ``request`` recorded when the step ended with a certificate
    written (a Ready status document, which carries the certificate's fingerprint)."""
    out = dict(step_status)
    if request is not None and out.get("fingerprint"):
        out[STATUS_FIELD] = request
    return out
