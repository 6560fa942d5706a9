"""The one place that turns an error into "retry after N s" or "permanent, say why in status".

Reconcilers raise; the handler layer calls :func:`classify` and never inspects exceptions
itself. Messages returned here go into status and Events, so they are built from problem
details and our own texts only — never from objects that could hold key material.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from certdepot.acme import fields
from certdepot.acme.client_errors import AcmeClientError, AcmeTimeout, Unsupported
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import Timeout, TlsError, TransportError

_TLS_HINT = "cannot verify the repository's TLS certificate (check caBundle)"


class ReconcileError(Exception):
    """An error whose condition reason and permanence the reconciler already knows."""

    def __init__(self, reason: str, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent


class SecretConflict(ReconcileError):
    """The target Secret exists and certdepot does not manage it."""

    def __init__(self, message: str) -> None:
        super().__init__("SecretConflict", message, permanent=True)


class RepositoryNotReady(ReconcileError):
    def __init__(self, message: str) -> None:
        super().__init__("RepositoryNotReady", message, permanent=False)


class RepositoryNotAllowed(ReconcileError):
    def __init__(self, message: str) -> None:
        super().__init__("RepositoryNotAllowed", message, permanent=True)


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff: base * 2**(attempt-1), capped; permanent errors recheck at the cap."""

    base_seconds: float = 5.0
    cap_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        exponent = min(max(attempt, 1) - 1, 30)
        return float(min(self.cap_seconds, self.base_seconds * (2**exponent)))


@dataclass(frozen=True)
class Outcome:
    """How a failed attempt is reported and when the next one happens."""

    reason: str
    message: str
    permanent: bool
    retry_after: float


# ACME problems that another attempt with the same spec cannot fix.
_PERMANENT_PROBLEMS = {
    "unauthorized": "Unauthorized",
    "rejectedIdentifier": "RejectedIdentifier",
    "unsupportedIdentifier": "RejectedIdentifier",
    "badCSR": "BadCSR",
    "unknownDelegation": "UnknownDelegation",
    "externalAccountRequired": "ExternalAccountRequired",
    "invalidContact": "InvalidContact",
    "unsupportedContact": "InvalidContact",
    "userActionRequired": "UserActionRequired",
    "invalidProfile": "InvalidProfile",
    "caa": "CAA",
    "autoRenewalCanceled": "AutoRenewalCanceled",
    "autoRenewalExpired": "AutoRenewalExpired",
}


def classify(error: BaseException, attempt: int, policy: BackoffPolicy) -> Outcome:
    """Map any exception from a reconcile attempt to an :class:`Outcome`.

    ``attempt`` counts consecutive failures including this one (1 for the first).
    """
    if isinstance(error, ReconcileError):
        return _outcome(error.reason, error.message, error.permanent, attempt, policy)
    if isinstance(error, TransportError):
        return _transport_outcome(error, attempt, policy)
    if isinstance(error, AcmeClientError):
        return _client_outcome(error, attempt, policy)
    if isinstance(error, AcmeProblem):
        short = error.short_type
        text = f"repository: {error}"
        if short in _PERMANENT_PROBLEMS:
            return _outcome(_PERMANENT_PROBLEMS[short], text, True, attempt, policy)
        if short == "rateLimited":
            retry = _retry_after(error)
            delay = max(retry, policy.delay(attempt)) if retry else policy.delay(attempt)
            return Outcome("RateLimited", text, False, min(delay, max(policy.cap_seconds, retry)))
        return _outcome("AcmeError", text, False, attempt, policy)
    if isinstance(error, ssl.SSLError):
        # Not from a request (those are TlsError): building the TLS context from caBundle.
        return _outcome("TLSError", f"{_TLS_HINT}: {_short(error)}", False, attempt, policy)
    # Anything else is a bug or an API server hiccup: keep trying, with backoff.
    return _outcome("Failed", f"{type(error).__name__}: {_short(error)}", False, attempt, policy)


def _transport_outcome(error: TransportError, attempt: int, policy: BackoffPolicy) -> Outcome:
    """No HTTP answer from the repository: all transient, the reason says which kind."""
    if isinstance(error, TlsError):
        return _outcome("TLSError", f"{_TLS_HINT}: {error.message}", False, attempt, policy)
    if isinstance(error, Timeout):
        return _outcome("Timeout", error.message, False, attempt, policy)
    # ConnectError, ProtocolError: the connection failed or broke.
    return _outcome(
        "ConnectionError", f"cannot reach the repository: {error.message}", False, attempt, policy
    )


def _client_outcome(error: AcmeClientError, attempt: int, policy: BackoffPolicy) -> Outcome:
    """Errors the ACME client raises itself about an answer (not a problem document)."""
    if isinstance(error, AcmeTimeout):
        return _outcome("Timeout", error.detail, False, attempt, policy)
    if isinstance(error, Unsupported):
        return _outcome("Unsupported", f"repository: {error.detail}", True, attempt, policy)
    return _outcome("BadResponse", f"repository: {error.detail}", False, attempt, policy)


def _outcome(
    reason: str, message: str, permanent: bool, attempt: int, policy: BackoffPolicy
) -> Outcome:
    delay = policy.cap_seconds if permanent else policy.delay(attempt)
    return Outcome(reason, message, permanent, delay)


def _retry_after(problem: AcmeProblem) -> float:
    # The ACME client fills retry_after from the response's Retry-After header, or from the
    # problem document's own "retry-after" member; a problem built elsewhere may carry only
    # the member.
    value = problem.retry_after or problem.extra.get(fields.PROBLEM_RETRY_AFTER)
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _short(error: BaseException, limit: int = 300) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
