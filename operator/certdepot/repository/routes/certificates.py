"""Certificate retrieval (RFC 8555 §7.4.2) and revocation (§7.6)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import certdepot.repository.rotation as rotation
from certdepot.acme import crypto, jws
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import grants, star, tenants, upstream_revocation
from certdepot.repository import store as tables
from certdepot.repository.http import Signed, acme_headers, acme_post, repo_of
from certdepot.repository.state import Repo

PEM_CHAIN = "application/pem-certificate-chain"


def may_read(repo: Repo, cert: dict[str, Any], account_id: str) -> bool:
    if cert["account_id"] == account_id:
        return True
    return bool(repo.store.find(tables.orders, account_id=account_id, cert_id=cert["id"],
                                status="valid"))


@acme_post()
def certificate(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    cert = repo.store.get(tables.certificates, request.path_params["cert"])
    if cert is None:
        raise AcmeProblem("malformed", "no such certificate", status=404)
    issued = None
    if cert["order_id"]:
        issued = repo.store.get(tables.orders, cert["order_id"])
        if issued is not None and issued["account_id"] == signed.account["id"] and \
                issued["data"].get("auto_renewal"):
            star.require_active(repo, issued)  # RFC 8739 §3.3: not after cancel or end
    # Who may read it (404 for anyone else) and whether the grant still holds (403).
    grants.require_certificate(repo, cert, signed.account, issued=issued)
    return pem_response(repo, cert)


def pem_response(repo: Repo, cert: dict[str, Any], extra: dict[str, str] | None = None
                 ) -> Response:
    return Response(cert["chain_pem"], media_type=PEM_CHAIN,
                    headers=acme_headers(repo, extra))


# Signed either by the account that holds the certificate (kid) or by its key (jwk).
@acme_post(use_jwk=None)
def revoke(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    payload = signed.payload or {}
    try:
        der = jws.b64decode(str(payload.get("certificate", "")))
        leaf = crypto.load_certificate(der)
    except ValueError:
        raise AcmeProblem("malformed", "certificate must be base64url DER") from None
    reason = payload.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in (
            rotation.REASON_NAMES):
        raise AcmeProblem("badRevocationReason", f"reason {reason!r} is not allowed")
    rows = repo.store.select(tables.certificates,
                             tables.certificates.c.serial == crypto.serial_hex(leaf))
    row = next((r for r in rows if crypto.parse_pem_chain(r["chain_pem"])[0]
                .public_bytes(serialization.Encoding.DER) == der), None)
    if row is None:
        raise AcmeProblem("malformed", "certificate was not issued here", status=404)
    requested_by = _may_revoke(repo, row, signed, leaf)
    if row["revoked"] or not rotation.mark_revoked(repo, row, reason,
                                                   requested_by=requested_by):
        raise AcmeProblem("alreadyRevoked", "certificate is already revoked")
    if row["managed_name"]:
        # Shared: replaced at once (its consumers learn it from renewalInfo), and the
        # upstream CA told, once this request's transaction is committed.
        repo.spawn_from_thread(rotation.reissue_revoked(repo, row["managed_name"]),
                               f"reissue-{row['managed_name']}")
    else:
        repo.spawn_from_thread(upstream_revocation.tell_upstream(repo, row, reason),
                               f"revoke-{row['id']}")
    return Response(status_code=200, headers=acme_headers(repo))


def _may_revoke(repo: Repo, row: dict[str, Any], signed: Signed,
                leaf: x509.Certificate) -> str:
    """Who revokes (for the record), or ``unauthorized``. A managed certificate is shared by
    every consumer that downloaded it: its key proves only that one did, so only the admin
    (rotate) or a tenant the policy names (``revoke``) may revoke it."""
    if signed.account is None:
        if row["managed_name"] is not None:
            raise AcmeProblem("unauthorized", "a downloaded key gives no right to revoke a "
                              "shared certificate; ask the repository's admin")
        pub = jws.public_key_from_jwk(signed.jwk)
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if pub.public_bytes(enc, fmt) != leaf.public_key().public_bytes(enc, fmt):
            raise AcmeProblem("unauthorized", "signed with a key other than the certificate's")
        return "certificate key"
    account = signed.account
    if row["managed_name"] is not None:
        tenant = tenants.require_policy(repo, account)
        if row["managed_name"] not in tenant.revoke:
            raise AcmeProblem("unauthorized", "this account may not revoke that certificate")
        return f"tenant {tenant.name} account {account['id']}"
    if not may_read(repo, row, account["id"]):
        raise AcmeProblem("unauthorized", "this account may not revoke that certificate")
    return f"account {account['id']}"


routes = [
    Route("/acme/cert/{cert}", certificate, methods=["POST"]),
    Route("/acme/revoke-cert", revoke, methods=["POST"]),
]
