"""RFC 9115 §2.3.1: the account's delegations list and delegation objects."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme.problems import AcmeProblem
from certdepot.repository import delegation
from certdepot.repository.http import acme_json, repo_of, verify_post


async def delegations_list(request: Request) -> Response:
    repo = repo_of(request)
    signed = await verify_post(request)
    assert signed.account is not None
    if signed.account["id"] != request.path_params["acct"]:
        raise AcmeProblem("unauthorized", "not this account's delegations")
    names = [d.name for d in delegation.delegations_for(repo, signed.account)]
    return acme_json(repo, {"delegations": [
        repo.urls.delegation(signed.account["id"], n) for n in names]})


async def delegation_object(request: Request) -> Response:
    repo = repo_of(request)
    signed = await verify_post(request)
    assert signed.account is not None
    if signed.account["id"] != request.path_params["acct"]:
        raise AcmeProblem("unauthorized", "not this account's delegation")
    d = next((d for d in delegation.delegations_for(repo, signed.account)
              if d.name == request.path_params["name"]), None)
    if d is None:
        raise AcmeProblem("unknownDelegation", "no such delegation for this account")
    doc: dict[str, object] = {"csr-template": d.csr_template}
    if d.cname_map:
        doc["cname-map"] = d.cname_map
    return acme_json(repo, doc)


routes = [
    Route("/acme/acct/{acct}/delegations", delegations_list, methods=["POST"]),
    Route("/acme/acct/{acct}/delegation/{name}", delegation_object, methods=["POST"]),
]
