"""ACME Renewal Information (RFC 9773) for certificates the repository serves.

For a managed certificate the window opens (start in the past) as soon as the repository
holds a newer certificate for that entry: that is how download clients learn of renewals.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certdepot.acme import ari
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import certstore
from certdepot.repository import store as tables
from certdepot.repository.http import acme_json, repo_of, threaded
from certdepot.repository.views import rfc3339


@threaded
def renewal_info(request: Request) -> Response:
    repo = repo_of(request)
    cert_id = request.path_params["certid"]
    ari.parse_cert_id(cert_id)  # malformed when not a CertID
    rows = repo.store.select(tables.certificates, tables.certificates.c.ari_id == cert_id)
    if not rows:
        raise AcmeProblem("malformed", "no certificate with that identifier", status=404)
    row = rows[0]
    now = repo.clock()
    if row["managed_name"]:
        current = certstore.current_managed(repo.store, row["managed_name"])
        newer = current is not None and current["id"] != row["id"] and \
            current["created"] >= row["created"]
    else:
        newer = bool(repo.store.select(
            tables.certificates, tables.certificates.c.order_id == row["order_id"],
            tables.certificates.c.not_after > row["not_after"])) if row["order_id"] else False
    if newer or row["revoked"]:
        # Renew now: the repository already holds the successor (or this one is revoked).
        start, end = now - 60, now + 3600
    else:
        s, e = ari.default_window(dt.datetime.fromtimestamp(row["not_before"], dt.UTC),
                                  dt.datetime.fromtimestamp(row["not_after"], dt.UTC))
        start, end = s.timestamp(), e.timestamp()
    doc: dict[str, object] = {"suggestedWindow": {"start": rfc3339(start),
                                                  "end": rfc3339(end)}}
    retry = int(repo.config.ari_retry_after.total_seconds())
    return acme_json(repo, doc, headers={"Retry-After": str(retry)})


routes = [Route("/acme/renewal-info/{certid}", renewal_info, methods=["GET"])]
