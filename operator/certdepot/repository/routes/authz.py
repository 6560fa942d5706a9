"""Authorizations and challenges (RFC 8555 §7.5)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme.problems import AcmeProblem
from certdepot.repository import store as tables
from certdepot.repository import validation
from certdepot.repository.http import Signed, acme_json, acme_post, repo_of
from certdepot.repository.state import Repo
from certdepot.repository.views import authz_json, challenge_json


def _own_authz(repo: Repo, authz_id: str, account: dict[str, Any] | None) -> dict[str, Any]:
    row = repo.store.get(tables.authzs, authz_id)
    if row is None or account is None or row["account_id"] != account["id"]:
        raise AcmeProblem("malformed", "no such authorization", status=404)
    if row["status"] in ("pending", "valid") and row["expires"] < repo.clock():
        repo.store.update(tables.authzs, authz_id, status="expired")
        row = {**row, "status": "expired"}
    return row


@acme_post()
def authz(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    row = _own_authz(repo, request.path_params["authz"], signed.account)
    if signed.payload and signed.payload.get("status") == "deactivated":
        if row["status"] not in ("pending", "valid"):
            raise AcmeProblem("malformed", f"authorization is {row['status']}")
        repo.store.update(tables.authzs, row["id"], status="deactivated")
        row = {**row, "status": "deactivated"}
    headers = {"Retry-After": "2"} if row["status"] == "pending" and any(
        c["status"] == "processing" for c in row["challenges"]) else None
    return acme_json(repo, authz_json(repo, row), headers=headers)


@acme_post()
def challenge(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    row = _own_authz(repo, request.path_params["authz"], signed.account)
    chall = next((c for c in row["challenges"] if c["id"] == request.path_params["chall"]),
                 None)
    if chall is None:
        raise AcmeProblem("malformed", "no such challenge", status=404)
    if signed.payload is not None and chall["status"] == "pending" and row["status"] == "pending":
        chall = {**chall, "status": "processing"}
        updated = [chall if c["id"] == chall["id"] else c for c in row["challenges"]]
        if repo.store.update(tables.authzs, row["id"], where={"status": "pending"},
                             challenges=updated):
            repo.spawn_from_thread(validation.validate(repo, row["id"], chall["id"],
                                                       signed.jwk), f"validate-{row['id']}")
    links = [(repo.urls.authz(row["id"]), "up")]
    return acme_json(repo, challenge_json(repo, row["id"], chall), links=links,
                     headers={"Retry-After": "1"} if chall["status"] == "processing" else None)


routes = [
    Route("/acme/authz/{authz}", authz, methods=["POST"]),
    Route("/acme/chall/{authz}/{chall}", challenge, methods=["POST"]),
]
