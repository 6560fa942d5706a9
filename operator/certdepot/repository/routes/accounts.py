"""Accounts (RFC 8555 §7.3): newAccount with External Account Binding, lookup, update,
deactivation, key rollover, and the orders list."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme import eab as eab_mod
from certdepot.acme import jws
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import store as tables
from certdepot.repository import tenants
from certdepot.repository.http import Signed, acme_json, acme_post, problem_response, repo_of
from certdepot.repository.quotas import check_new_account, check_unbound_account
from certdepot.repository.store import new_id
from certdepot.repository.views import account_json, url_list


def _contacts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise AcmeProblem("malformed", "contact must be an array of strings")
    for c in value:
        if not c.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", f"only mailto: contacts, not {c!r}")
        if "," in c or "@" not in c:
            raise AcmeProblem("invalidContact", f"{c!r} is not one email address")
    return list(value)


@acme_post(use_jwk=True)
def new_account(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    payload = signed.payload or {}
    thumb = jws.thumbprint_b64(signed.jwk)
    existing = repo.store.select(tables.accounts, tables.accounts.c.thumbprint == thumb)
    if existing:
        row = existing[0]
        if row["status"] != "valid":
            raise AcmeProblem("unauthorized", tenants.inactive_detail(repo.store, row))
        return acme_json(repo, account_json(repo, row), 200,
                         location=repo.urls.account(row["id"]))
    if payload.get("onlyReturnExisting"):
        raise AcmeProblem("accountDoesNotExist", "no account for this key")
    contact = _contacts(payload.get("contact"))
    tenant: str | None = None
    binding = payload.get("externalAccountBinding")
    if binding is not None:
        found: dict[str, str] = {}

        def key_for(kid: str) -> bytes | None:
            hit = tenants.hmac_key_for(repo.store, repo.vault, kid)
            if hit is None:
                return None
            found["tenant"] = hit[0]
            return hit[1]

        eab_mod.verify_eab(binding, account_jwk=signed.jwk, url=repo.urls.new_account(),
                           hmac_key_for=key_for)
        tenant = found["tenant"]
        check_new_account(repo, tenant)
    elif repo.config.eab_required:
        raise AcmeProblem("externalAccountRequired",
                          "this server requires External Account Binding credentials")
    else:
        check_unbound_account(repo)
    acct_id = new_id()
    row = {"id": acct_id, "thumbprint": thumb, "jwk": signed.jwk, "status": "valid",
           "contact": contact, "tenant": tenant, "created": repo.clock()}
    repo.store.insert(tables.accounts, **row)
    return acme_json(repo, account_json(repo, row), 201, location=repo.urls.account(acct_id))


def _own_account(request: Request, signed_account: dict[str, Any] | None) -> dict[str, Any]:
    acct_id = request.path_params["acct"]
    if signed_account is None or signed_account["id"] != acct_id:
        raise AcmeProblem("unauthorized", "requests must be signed by this account's key")
    return signed_account


@acme_post()
def account(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    row = _own_account(request, signed.account)
    payload = signed.payload
    if payload:
        if payload.get("status") == "deactivated":
            repo.store.update(tables.accounts, row["id"], status="deactivated")
            for o in repo.store.select(tables.orders, tables.orders.c.account_id == row["id"],
                                       tables.orders.c.status.in_(["pending", "ready"])):
                repo.store.update(tables.orders, o["id"], status="invalid")
            row = {**row, "status": "deactivated"}
        elif payload.get("status") is not None:
            raise AcmeProblem("malformed", "status may only be set to deactivated")
        if "contact" in payload:
            contact = _contacts(payload["contact"])
            repo.store.update(tables.accounts, row["id"], contact=contact)
            row = {**row, "contact": contact}
    return acme_json(repo, account_json(repo, row), location=repo.urls.account(row["id"]))


@acme_post()
def orders_list(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    row = _own_account(request, signed.account)
    orders = repo.store.select(tables.orders, tables.orders.c.account_id == row["id"],
                               tables.orders.c.status.in_(["pending", "ready", "processing",
                                                           "valid"]),
                               order_by=tables.orders.c.created)
    urls = [repo.urls.order(o["id"]) for o in orders]
    return acme_json(repo, url_list("orders", urls, repo.urls.orders(row["id"])).to_json())


def _is_key(jwk: Any, thumbprint: str) -> bool:
    """Whether ``jwk`` is a JWK with that thumbprint (False, not an error, for junk)."""
    try:
        return isinstance(jwk, dict) and jws.thumbprint_b64(jwk) == thumbprint
    except ValueError:
        return False


@acme_post()
def key_change(request: Request, signed: Signed) -> Response:
    """RFC 8555 §7.3.5: the inner JWS, signed by the new key, names the account and the
    old key; both signatures must verify."""
    repo = repo_of(request)
    assert signed.account is not None
    inner = jws.parse_jws(signed.raw_payload, require_nonce=False)
    if inner.jwk is None:
        raise AcmeProblem("malformed", "inner JWS must carry the new key as jwk")
    if "nonce" in inner.protected:
        raise AcmeProblem("malformed", "inner JWS must not carry a nonce")
    if inner.url != repo.urls.key_change():
        raise AcmeProblem("malformed", "inner JWS url must be the keyChange URL")
    inner.verify(jws.public_key_from_jwk(inner.jwk))
    body = inner.payload_json() or {}
    if body.get("account") != repo.urls.account(signed.account["id"]):
        raise AcmeProblem("malformed", "inner payload account does not match the signer")
    if not _is_key(body.get("oldKey"), signed.account["thumbprint"]):
        raise AcmeProblem("malformed", "oldKey is not the account's current key")
    new_jwk = jws.canonical_jwk(inner.jwk)  # public_key_from_jwk accepted it: complete
    thumb = jws.thumbprint_b64(new_jwk)
    clash = repo.store.select(tables.accounts, tables.accounts.c.thumbprint == thumb)
    if clash:
        return problem_response(
            repo, AcmeProblem("malformed", "new key is already in use", status=409),
            headers={"Location": repo.urls.account(clash[0]["id"])})
    repo.store.update(tables.accounts, signed.account["id"], jwk=new_jwk, thumbprint=thumb)
    row = repo.store.get(tables.accounts, signed.account["id"]) or signed.account
    return acme_json(repo, account_json(repo, row), location=repo.urls.account(row["id"]))


routes = [
    Route("/acme/new-account", new_account, methods=["POST"]),
    Route("/acme/acct/{acct}", account, methods=["POST"]),
    Route("/acme/acct/{acct}/orders", orders_list, methods=["POST"]),
    Route("/acme/key-change", key_change, methods=["POST"]),
]
