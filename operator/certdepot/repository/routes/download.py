"""The download extension's private-key resource (docs/protocol.md): the certificate's key
wrapped as a JWE for the ephemeral key the ordering account sent at finalize."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import certdepot.repository.consumers as consumers
from certdepot.acme import fields, keywrap
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import grants
from certdepot.repository import store as tables
from certdepot.repository.http import Signed, acme_headers, acme_post, repo_of

log = logging.getLogger("certdepot.repository.download")


@acme_post()
def private_key(request: Request, signed: Signed) -> Response:
    repo = repo_of(request)
    assert signed.account is not None
    if signed.payload is not None:
        raise AcmeProblem("malformed", "fetch the private key with POST-as-GET")
    order = repo.store.get(tables.orders, request.path_params["order"])
    if order is None or not order["data"].get("download"):
        raise AcmeProblem("malformed", "no such download order", status=404)
    if order["account_id"] != signed.account["id"]:
        raise AcmeProblem("unauthorized", "only the ordering account may fetch this key")
    if order["status"] != "valid" or not order["cert_id"]:
        raise AcmeProblem("orderNotReady", f"order is {order['status']}, not valid")
    # Every fetch, not only the first: the grant may have been withdrawn since finalize.
    grants.require(repo, order, signed.account, fields.PRIVATE_KEY)
    cert = repo.store.get(tables.certificates, order["cert_id"])
    if cert is None or cert["key"] is None:
        raise AcmeProblem("serverInternal", "the certificate's key is not held here")
    der = repo.key_cache.pkcs8(repo.vault, cert, repo.config.limits.key_cache_entries)
    token = keywrap.wrap_pkcs8(der, order["data"]["ephemeral_jwk"])
    repo.store.insert(tables.deliveries, tenant=signed.account.get("tenant"),
                      account_id=signed.account["id"], managed_name=cert["managed_name"],
                      cert_id=cert["id"], serial=cert["serial"], delivered=repo.clock())
    consumers.delivered(repo, signed.account, cert, consumers.identity_from(request.headers))
    request.app.state.metrics.deliveries.labels(signed.account.get("tenant") or "").inc()
    log.info("key of %s serial %s delivered to tenant %s account %s", cert["managed_name"],
             cert["serial"], signed.account.get("tenant"), signed.account["id"])
    return Response(token, media_type=keywrap.MEDIA_TYPE, headers=acme_headers(repo))


routes = [Route("/acme/order/{order}/private-key", private_key, methods=["POST"])]
