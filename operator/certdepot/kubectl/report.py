"""What the plugin reports, as plain data: pure functions of API objects and the clock.

``-o json|yaml`` prints these documents as they are; the table view (:mod:`tables`) only
lays them out. Private keys are read to check that they match, never copied into a report.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.timefmt import rfc3339
from certdepot.controller.core import renewrequest

SECRET_KINDS = ("CertificateDownload", "DelegatedCertificate")
RECENT_EVENTS = 10


def _certificate(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": crypto.serial_hex(cert),
        "dnsNames": crypto.certificate_dns_names(cert),
        "notBefore": rfc3339(cert.not_valid_before_utc),
        "notAfter": rfc3339(cert.not_valid_after_utc),
        "fingerprintSHA256": crypto.fingerprint_sha256(cert),
    }


def _decoded(data: Mapping[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _chain(raw: bytes | None, problems: list[str], what: str) -> list[x509.Certificate]:
    if raw is None:
        problems.append(f"{what} is missing")
        return []
    try:
        return crypto.parse_pem_chain(raw)
    except ValueError:
        problems.append(f"{what} holds no PEM certificate")
        return []


def _key_matches(raw: bytes | None, leaf: x509.Certificate, problems: list[str]) -> bool | None:
    if raw is None:
        problems.append("tls.key is missing")
        return None
    try:
        key = crypto.load_private_key(raw)
    except (ValueError, TypeError):
        # The loader's own message is not shown: nothing about key material goes to output.
        problems.append("tls.key is not a readable unencrypted private key")
        return None
    if not crypto.public_key_matches(key, leaf):
        problems.append("tls.key does not match the certificate in tls.crt")
        return False
    return True


def _verify(chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime,
            problems: list[str]) -> str:
    """``verified`` (up to ca.crt), ``linked`` (no ca.crt: links and dates only) or ``broken``."""
    anchors = roots or chain[-1:]
    try:
        crypto.verify_chain(chain, anchors, now)
    except crypto.ChainError as exc:
        problems.append(f"chain: {exc}")
        return "broken"
    return "verified" if roots else "linked"


def inspect_secret(secret: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Decode a kubernetes.io/tls Secret: its chain, whether the key matches, the expiry."""
    meta = secret.get("metadata") or {}
    data = secret.get("data") or {}
    problems: list[str] = []
    out: dict[str, Any] = {"secret": f"{meta.get('namespace')}/{meta.get('name')}",
                           "type": secret.get("type")}
    chain = _chain(_decoded(data, "tls.crt"), problems, "tls.crt")
    roots = _chain(_decoded(data, "ca.crt"), [], "ca.crt") if data.get("ca.crt") else []
    out["chain"] = [_certificate(c) for c in chain]
    out["ca"] = [_certificate(c) for c in roots]
    if chain:
        leaf = chain[0]
        out["keyMatches"] = _key_matches(_decoded(data, "tls.key"), leaf, problems)
        out["chainCheck"] = _verify(chain, roots, now, problems)
        remaining = (leaf.not_valid_after_utc - now).total_seconds()
        out["expired"] = remaining <= 0
        out["secondsToExpiry"] = int(remaining)
        if remaining <= 0:
            problems.append(f"the certificate expired at {rfc3339(leaf.not_valid_after_utc)}")
    out["problems"] = problems
    out["ok"] = bool(chain) and not problems
    return out


def _condition(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for cond in status.get("conditions") or ():
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def _events(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": e.get("type"),
            "reason": e.get("reason"),
            "message": e.get("message"),
            "count": e.get("count") or 1,
            "lastSeen": e.get("lastTimestamp") or e.get("eventTime")
            or (e.get("metadata") or {}).get("creationTimestamp"),
        }
        for e in list(events)[-RECENT_EVENTS:]
    ]


def _last_failure(status: Mapping[str, Any], ready: Mapping[str, Any]) -> dict[str, Any] | None:
    if not status.get("lastFailureTime"):
        return None
    # The reason of a failure lives in the Ready condition: its own when Ready is False,
    # RenewalFailed when the Secret still holds a good certificate.
    return {"time": status.get("lastFailureTime"), "reason": ready.get("reason"),
            "message": status.get("lastFailureMessage"),
            "failedAttempts": status.get("failedAttempts") or 0}


def status_report(kind: str, obj: Mapping[str, Any], secret: Mapping[str, Any] | None,
                  events: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """Everything ``kubectl certdepot status`` shows about one resource."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = _condition(status, "Ready")
    out: dict[str, Any] = {
        "kind": kind, "namespace": meta.get("namespace"), "name": meta.get("name"),
        "ready": ready.get("status", "Unknown"), "reason": ready.get("reason"),
        "message": ready.get("message"),
        "conditions": list(status.get("conditions") or []),
        "lastFailure": _last_failure(status, ready),
    }
    if kind in SECRET_KINDS:
        out.update(_certificate_status(spec, status, meta, secret, now))
    else:
        out["repository"] = {k: status.get(k) for k in
                             ("accountURL", "lastRegisteredURL", "accountKeySecretName")}
        out["repository"]["url"] = spec.get("url")
        out["repository"]["downloadEnabled"] = (status.get("directory") or {}).get(
            "downloadEnabled")
        out["repository"]["delegations"] = len(status.get("delegations") or [])
    out["events"] = _events(events)
    return out


def _certificate_status(spec: Mapping[str, Any], status: Mapping[str, Any],
                        meta: Mapping[str, Any], secret: Mapping[str, Any] | None,
                        now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dnsNames": list(spec.get("dnsNames") or []),
        "renewalTime": status.get("renewalTime"),
        "renewal": {
            "requested": renewrequest.requested(meta),
            "lastHonoured": status.get(renewrequest.STATUS_FIELD),
            "pending": renewrequest.pending(meta, status) is not None,
        },
    }
    name = spec.get("secretName")
    if secret is None:
        out["secret"] = {"name": name, "exists": False}
        return out
    decoded = inspect_secret(secret, now)
    leaf = decoded["chain"][0] if decoded["chain"] else None
    out["secret"] = {"name": name, "exists": True, "certificate": leaf,
                     "keyMatches": decoded.get("keyMatches"), "problems": decoded["problems"],
                     "matchesStatus": leaf is not None and leaf["serial"] == status.get("serial")}
    return out
