"""Directory (RFC 8555 §7.1.1) and newNonce (§7.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.repository.http import acme_headers, acme_json, repo_of, threaded
from certdepot.repository.policy import advertised_profiles


@threaded
def directory(request: Request) -> Response:
    repo = repo_of(request)
    u = repo.urls
    profiles = advertised_profiles(repo.config)
    meta: dict[str, object] = {
        "externalAccountRequired": repo.config.eab_required,
        "download-enabled": True,
        "delegation-enabled": any(t.delegations for t in repo.config.tenants),
        "auto-renewal": {
            "min-lifetime": int(repo.config.star_min_lifetime.total_seconds()),
            "max-duration": int(repo.config.star_max_duration.total_seconds()),
            "allow-certificate-get": any(d.allow_certificate_get for t in repo.config.tenants
                                         for d in t.delegations)},
    }
    if profiles:
        meta["profiles"] = {p: f"upstream profile {p}" for p in profiles}
    doc = {
        "newNonce": u.new_nonce(),
        "newAccount": u.new_account(),
        "newOrder": u.new_order(),
        "revokeCert": u.revoke_cert(),
        "keyChange": u.key_change(),
        "renewalInfo": u.renewal_info(),
        "meta": meta,
    }
    return acme_json(repo, doc)


@threaded
def new_nonce(request: Request) -> Response:
    repo = repo_of(request)
    status = 200 if request.method == "HEAD" else 204
    return Response(status_code=status, headers=acme_headers(repo))


routes = [
    Route("/directory", directory, methods=["GET"]),
    Route("/acme/new-nonce", new_nonce, methods=["GET", "HEAD"]),
]
