"""ACME Renewal Information (RFC 9773) for certificates the repository serves.

Every window is a function of stored facts, never of the moment of the request, so each
poll answers the same dates and a client's random pick inside them stays put:

- revoked (rotation.py): the window fixed at revocation, wholly in the past ("renew now"),
  with an ``explanationURL`` and the reason (certdepot's ``revoked`` member);
- superseded (the repository holds a newer certificate for that entry or STAR order):
  from the successor's creation, for ``SUPERSEDED_SPREAD`` seconds;
- otherwise 2/3 .. 5/6 of the lifetime.

``Retry-After`` is ``ariRetryAfter``: how long consumers wait before asking again, which is
what bounds their reaction to a rotation. A poll naming an account is a consumer check-in
(consumers.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certdepot.acme import ari, fields
from certdepot.acme.messages import RenewalInfo
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339, utc_seconds
from certdepot.repository import certstore, consumers, rotation
from certdepot.repository import store as tables
from certdepot.repository.http import acme_json, repo_of, threaded
from certdepot.repository.state import Repo

#: A superseded certificate's window: consumers spread their fetches over this long after
#: the successor exists (capped at the old certificate's expiry).
SUPERSEDED_SPREAD = 3600.0


def _successor(repo: Repo, row: dict[str, Any]) -> dict[str, Any] | None:
    if row["managed_name"]:
        current = certstore.current_managed(repo.store, row["managed_name"])
        if current is not None and current["id"] != row["id"] and \
                current["created"] >= row["created"]:
            return current
        return None
    if not row["order_id"]:
        return None
    newer = repo.store.select(
        tables.certificates, tables.certificates.c.order_id == row["order_id"],
        tables.certificates.c.not_after > row["not_after"],
        order_by=tables.certificates.c.created)
    return newer[0] if newer else None


def _lookup(repo: Repo, cert_id: str) -> dict[str, Any]:
    ari.parse_cert_id(cert_id)  # malformed when not a CertID
    rows = repo.store.select(tables.certificates, tables.certificates.c.ari_id == cert_id)
    if not rows:
        raise AcmeProblem("malformed", "no certificate with that identifier", status=404)
    return rows[0]


def window_of(repo: Repo, row: dict[str, Any]) -> dict[str, Any]:
    """The renewalInfo document of a stored certificate (without Retry-After)."""
    return renewal_info_of(repo, row).to_json()


def renewal_info_of(repo: Repo, row: dict[str, Any]) -> RenewalInfo:
    """The renewalInfo of a stored certificate, as the client's type."""
    if row["revoked"]:
        rev = rotation.revocation(repo, row["id"])
        # A row revoked before revocations were recorded: fix its window at issuance.
        start, end = ((rev["window_start"], rev["window_end"]) if rev else
                      (row["created"] - rotation.WINDOW_BEFORE[0],
                       row["created"] - rotation.WINDOW_BEFORE[1]))
        info = _window(start, end)
        info.explanation_url = rotation.explanation_url(repo, row)
        if rev is not None:
            info.extra[fields.REVOKED] = {
                fields.REVOKED_REASON: rotation.REASON_NAMES.get(rev["reason"], "unspecified"),
                fields.REVOKED_AT: rfc3339(rev["revoked_at"])}
        return info
    successor = _successor(repo, row)
    if successor is not None:
        start = successor["created"]
        end = max(start + 60, min(start + SUPERSEDED_SPREAD, row["not_after"] - 60))
        return _window(start, end)
    s, e = ari.default_window(dt.datetime.fromtimestamp(row["not_before"], dt.UTC),
                              dt.datetime.fromtimestamp(row["not_after"], dt.UTC))
    return _window(s.timestamp(), e.timestamp())


def _window(start: float, end: float) -> RenewalInfo:
    # Whole seconds, as every window has always been written.
    return RenewalInfo(start=utc_seconds(start), end=utc_seconds(end))


@threaded
def renewal_info(request: Request) -> Response:
    repo = repo_of(request)
    with repo.store.unit():
        row = _lookup(repo, request.path_params["certid"])
        doc = window_of(repo, row)
        consumers.checked_in(repo, row, request.headers)
    retry = int(repo.config.ari_retry_after.total_seconds())
    return acme_json(repo, doc, headers={"Retry-After": str(retry)})


@threaded
def explanation(request: Request) -> Response:
    """The page a revoked certificate's ``explanationURL`` names: what happened, for people."""
    repo = repo_of(request)
    row = _lookup(repo, request.path_params["certid"])
    rev = rotation.revocation(repo, row["id"]) if row["revoked"] else None
    if rev is None:
        raise AcmeProblem("malformed", "that certificate was not revoked here", status=404)
    reason = rotation.REASON_NAMES.get(rev["reason"], "unspecified")
    text = (f"Certificate serial {row['serial']} was revoked by the certdepot repository at "
            f"{rfc3339(rev['revoked_at'])} (reason: {reason}).\n"
            "Fetch the current certificate and key again: clients that follow renewalInfo "
            "do so on their next poll.\n")
    return PlainTextResponse(text, headers={"Cache-Control": "no-store"})


routes = [Route("/acme/renewal-info/{certid}", renewal_info, methods=["GET"]),
          Route("/rotation/{certid}", explanation, methods=["GET"])]
