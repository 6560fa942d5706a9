"""Internal rows -> RFC 8555 wire objects. Wire structs stay apart from stored state."""

from __future__ import annotations

from typing import Any

from certdepot.acme.timefmt import rfc3339
from certdepot.repository.state import Repo


def account_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": row["status"],
        "contact": list(row["contact"] or []),
        "orders": repo.urls.orders(row["id"]),
    }
    if row.get("tenant"):
        doc["externalAccountBinding"] = {"tenant": row["tenant"]}
    tenant = repo.tenant(row.get("tenant"))
    if tenant is not None and tenant.delegations:
        doc["delegations"] = repo.urls.delegations(row["id"])
    return doc


def order_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    data = row["data"]
    doc: dict[str, Any] = {
        "status": row["status"],
        "expires": rfc3339(row["expires"]),
        "identifiers": data["identifiers"],
        "authorizations": [repo.urls.authz(a) for a in data.get("authzs", [])],
        "finalize": repo.urls.finalize(row["id"]),
    }
    for key in ("notBefore", "notAfter", "profile", "replaces"):
        if data.get(key):
            doc[key] = data[key]
    if data.get("error"):
        doc["error"] = data["error"]
    if data.get("download"):
        doc["download"] = True
    if data.get("delegation"):
        doc["delegation"] = data["delegation_url"]
    if data.get("auto_renewal"):
        ar = dict(data["auto_renewal"])
        if data.get("star_cancelled"):
            doc["status"] = "canceled"
        doc["auto-renewal"] = ar
    if row["status"] == "valid" and row.get("cert_id"):
        if data.get("auto_renewal"):
            doc["star-certificate"] = repo.urls.star_certificate(row["id"])
        else:
            doc["certificate"] = repo.urls.certificate(row["cert_id"])
        if data.get("download"):
            doc["private-key"] = repo.urls.private_key(row["id"])
    return doc


def authz_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": row["status"],
        "expires": rfc3339(row["expires"]),
        "identifier": row["identifier"],
        "challenges": [challenge_json(repo, row["id"], c) for c in row["challenges"]],
    }
    if row["wildcard"]:
        doc["wildcard"] = True
    return doc


def challenge_json(repo: Repo, authz_id: str, ch: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": ch["type"],
        "url": repo.urls.challenge(authz_id, ch["id"]),
        "status": ch["status"],
        "token": ch["token"],
    }
    if ch.get("validated"):
        doc["validated"] = rfc3339(ch["validated"])
    if ch.get("error"):
        doc["error"] = ch["error"]
    return doc
