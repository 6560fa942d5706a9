"""RFC 9115 §2.3.1: the account's delegations list and delegation objects."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme import fields
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import delegation, views
from certdepot.repository.http import Signed, acme_json, acme_post, repo_of


@acme_post()
def delegations_list(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    if signed.account["id"] != request.path_params["acct"]:
        raise AcmeProblem("unauthorized", "not this account's delegations")
    acct_id = signed.account["id"]
    urls = [repo.urls.delegation(acct_id, d.name)
            for d in delegation.delegations_for(repo, signed.account)]
    return acme_json(repo, views.url_list(fields.DELEGATIONS, urls,
                                          repo.urls.delegations(acct_id)).to_json())


@acme_post()
def delegation_object(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    if signed.account["id"] != request.path_params["acct"]:
        raise AcmeProblem("unauthorized", "not this account's delegation")
    d = next((d for d in delegation.delegations_for(repo, signed.account)
              if d.name == request.path_params["name"]), None)
    if d is None:
        raise AcmeProblem("unknownDelegation", "no such delegation for this account")
    url = repo.urls.delegation(signed.account["id"], d.name)
    return acme_json(repo, views.delegation(d.csr_template, d.cname_map, url).to_json())


routes = [
    Route("/acme/acct/{acct}/delegations", delegations_list, methods=["POST"]),
    Route("/acme/acct/{acct}/delegation/{name}", delegation_object, methods=["POST"]),
]
