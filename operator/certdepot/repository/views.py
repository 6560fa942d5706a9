"""Internal rows -> RFC 8555 wire objects. Wire structs stay apart from stored state.

Every object is built as the :mod:`certdepot.acme.messages` type the client parses and
serialised by its ``to_json``: one definition of each member's name and form for both
sides. Times stored as POSIX seconds go out as whole-second RFC 3339 (``utc_seconds``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certdepot.acme import fields
from certdepot.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Delegation,
    Directory,
    DirectoryMeta,
    Identifier,
    Order,
    Status,
    UrlList,
)
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import parse_rfc3339, utc_seconds
from certdepot.repository.policy import advertised_profiles
from certdepot.repository.state import Repo


def account_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    return account(repo, row).to_json()


def account(repo: Repo, row: dict[str, Any]) -> Account:
    obj = Account(status=row["status"], contact=list(row["contact"] or []),
                  orders=repo.urls.orders(row["id"]), url=repo.urls.account(row["id"]))
    if row.get("tenant"):
        obj.external_account_binding = {"tenant": row["tenant"]}
    tenant = repo.tenant(row.get("tenant"))
    if tenant is not None and tenant.delegations:
        obj.extra[fields.DELEGATIONS] = repo.urls.delegations(row["id"])
    return obj


def order_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    return order(repo, row).to_json()


def order(repo: Repo, row: dict[str, Any]) -> Order:
    data = row["data"]
    obj = Order(
        status=row["status"],
        expires=utc_seconds(row["expires"]),
        identifiers=[Identifier.from_json(i) for i in data["identifiers"]],
        authorizations=[repo.urls.authz(a) for a in data.get("authzs", [])],
        finalize=repo.urls.finalize(row["id"]),
        not_before=_time(data.get("notBefore")),
        not_after=_time(data.get("notAfter")),
        profile=data.get("profile") or None,
        replaces=data.get("replaces") or None,
        error=_problem(data.get("error")),
        url=repo.urls.order(row["id"]),
    )
    if data.get("download"):
        obj.extra[fields.DOWNLOAD] = True
    if data.get("delegation"):
        obj.extra[fields.DELEGATION] = data["delegation_url"]
    if data.get("auto_renewal"):
        if data.get("star_cancelled"):
            obj.status = Status.CANCELED
        obj.extra[fields.AUTO_RENEWAL] = dict(data["auto_renewal"])
    if row["status"] == Status.VALID and row.get("cert_id"):
        if data.get("auto_renewal"):
            obj.extra[fields.STAR_CERTIFICATE] = repo.urls.star_certificate(row["id"])
        else:
            obj.certificate = repo.urls.certificate(row["cert_id"])
        if data.get("download"):
            obj.extra[fields.PRIVATE_KEY] = repo.urls.private_key(row["id"])
    return obj


def authz_json(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    return authorization(repo, row).to_json()


def authorization(repo: Repo, row: dict[str, Any]) -> Authorization:
    return Authorization(
        status=row["status"],
        expires=utc_seconds(row["expires"]),
        identifier=Identifier.from_json(row["identifier"]),
        challenges=[challenge(repo, row["id"], c) for c in row["challenges"]],
        wildcard=bool(row["wildcard"]),
        url=repo.urls.authz(row["id"]),
    )


def challenge_json(repo: Repo, authz_id: str, ch: dict[str, Any]) -> dict[str, Any]:
    return challenge(repo, authz_id, ch).to_json()


def challenge(repo: Repo, authz_id: str, ch: dict[str, Any]) -> Challenge:
    return Challenge(
        type=ch["type"],
        url=repo.urls.challenge(authz_id, ch["id"]),
        status=ch["status"],
        token=ch["token"],
        validated=utc_seconds(ch["validated"]) if ch.get("validated") else None,
        error=_problem(ch.get("error")),
    )


def directory(repo: Repo) -> Directory:
    u = repo.urls
    tenants = repo.config.tenants
    profiles = advertised_profiles(repo.config)
    meta = DirectoryMeta(
        external_account_required=repo.config.eab_required,
        profiles={p: f"upstream profile {p}" for p in profiles},
        extra={
            fields.DOWNLOAD_ENABLED: True,
            fields.DELEGATION_ENABLED: any(t.delegations for t in tenants),
            fields.AUTO_RENEWAL: {
                fields.MIN_LIFETIME: int(repo.config.star_min_lifetime.total_seconds()),
                fields.MAX_DURATION: int(repo.config.star_max_duration.total_seconds()),
                fields.ALLOW_CERTIFICATE_GET: any(
                    d.allow_certificate_get for t in tenants for d in t.delegations),
            },
        },
    )
    return Directory(new_nonce=u.new_nonce(), new_account=u.new_account(),
                     new_order=u.new_order(), revoke_cert=u.revoke_cert(),
                     key_change=u.key_change(), renewal_info=u.renewal_info(), meta=meta)


def delegation(csr_template: dict[str, Any], cname_map: dict[str, str] | None,
               url: str) -> Delegation:
    return Delegation(csr_template=csr_template, cname_map=dict(cname_map or {}), url=url)


def url_list(member: str, urls: list[str], url: str) -> UrlList:
    """An account's ``orders`` or ``delegations`` list."""
    return UrlList(member=member, urls=urls, url=url)


def _time(text: str | None) -> dt.datetime | None:
    # Stored as the client sent it (validity checked the form); rendered in the one format.
    return parse_rfc3339(text) if text else None


def _problem(doc: dict[str, Any] | None) -> AcmeProblem | None:
    # Stored as AcmeProblem.to_json(): parsing it back gives the same document.
    return AcmeProblem.from_json(doc) if doc else None
