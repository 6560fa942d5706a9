"""``kubectl certdepot inventory``: who holds which serial, as the repository reports it
(and ``kubectl certdepot tenants``: the repository's tenants, ``GET /admin/v1/tenants``).

A client of the repository's admin API, ``GET /admin/v1/inventory[?stale=true]``
(docs/operations.md, "Admin API" and "Inventory JSON"): the repository keeps the consumers
(tenant, cluster, CertificateDownload, serial held now, last check-in) in its store, so the
plugin shows the repository's own per-consumer view and computes nothing of its own. It
passes every entry through to ``-o json|yaml`` untouched and relies on these fields::

    {"name": str, "dns_names": [str], "issuer": str,
     "current": {"serial": str, "not_after": float} | null,
     "last_error": str | null,
     "consumers": [{"tenant": str, "cluster": str | null, "resource": str | null,
                    "serial": str, "state": "current" | "superseded" | "revoked",
                    "last_checkin": float | null}],
     "certificates": [{"serial": str, "not_before": float, "not_after": float,
                       "revoked": bool, "deliveries": [...]}]}

Times are Unix seconds.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API_VERSION = "certdepot.io/inventory/v1"
PATH = "/admin/v1/inventory"
TENANTS_API_VERSION = "certdepot.io/tenants/v1"
TENANTS_PATH = "/admin/v1/tenants"
#: Where the token is read from when neither --token-file nor --token-secret is given.
TOKEN_ENV = "CERTDEPOT_ADMIN_TOKEN"  # noqa: S105 (a variable name)
#: The key of the admin token in the chart's credentials Secret.
TOKEN_KEY = "admin-token"  # noqa: S105 (a key name)
TIMEOUT = 30.0


class InventoryError(Exception):
    """The repository's inventory could not be read (exit 4)."""


@dataclass
class Source:
    """Where and how to ask: the repository's base URL, the admin token, the CA to trust
    (None: the system's)."""

    base_url: str
    token: str
    ca_pem: bytes | None


def base_url(directory_url: str) -> str:
    """The repository's base URL from a repository object's ``spec.url`` (its ACME
    directory, ``<base>/directory``): the admin API lives under the same base."""
    url = directory_url.rstrip("/")
    return url[: -len("/directory")] if url.endswith("/directory") else url


def ca_bundle(spec: Mapping[str, Any]) -> bytes | None:
    raw = spec.get("caBundle")
    if not raw:
        return None
    try:
        return base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        raise InventoryError("the repository's caBundle is not base64") from None


def token_from(*, file: str | None, secret_data: Mapping[str, Any] | None,
               key: str) -> str | None:
    """The admin token: from a file, a Secret's ``data[key]``, else $CERTDEPOT_ADMIN_TOKEN."""
    if file is not None:
        try:
            return Path(file).read_text().strip() or None
        except OSError as exc:
            raise InventoryError(f"cannot read the token file: {exc.strerror}") from None
    if secret_data is not None:
        raw = secret_data.get(key)
        if not raw:
            return None
        try:
            return base64.b64decode(str(raw)).decode().strip() or None
        except (binascii.Error, ValueError):
            raise InventoryError(f"the Secret's {key!r} is not a token") from None
    return os.environ.get(TOKEN_ENV, "").strip() or None


def fetch(source: Source, *, stale: bool) -> list[dict[str, Any]]:
    """The repository's inventory entries (only those with stale consumers with ``stale``)."""
    res = _get(source, PATH + ("?stale=true" if stale else ""))
    return _document(res, API_VERSION, "certificates", "inventory")


def fetch_tenants(source: Source) -> list[dict[str, Any]]:
    """The repository's tenants (``GET /admin/v1/tenants``): each ``{"name", "policy",
    "eabKeyId", "created", "keyRotated", "accounts", "accountsDeactivated"}``; never a key."""
    return _document(_get(source, TENANTS_PATH), TENANTS_API_VERSION, "tenants", "tenant list")


def _get(source: Source, path: str) -> httpx.Response:
    url = source.base_url + path
    verify: ssl.SSLContext | bool = True
    try:
        if source.ca_pem is not None:
            verify = ssl.create_default_context(cadata=source.ca_pem.decode("ascii"))
        with httpx.Client(verify=verify, timeout=TIMEOUT) as http:
            return http.get(url, headers={"Authorization": f"Bearer {source.token}"})
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InventoryError(f"the repository's CA bundle is unusable: {exc}") from None
    except httpx.HTTPError as exc:
        raise InventoryError(f"cannot reach the repository at {source.base_url} "
                             f"({type(exc).__name__}: {exc})") from None


def _document(res: httpx.Response, api_version: str, member: str, what: str
              ) -> list[dict[str, Any]]:
    if res.status_code == 401:
        raise InventoryError("the repository refused the admin token (401)")
    if res.status_code == 404:
        raise InventoryError("the repository's admin API is off (404: no `admin:` section in "
                             "its configuration)")
    if res.status_code != 200:
        raise InventoryError(f"the repository answered {res.status_code}: "
                             f"{res.text[:200]}")
    try:
        doc = res.json()
    except ValueError:
        raise InventoryError(f"the repository's {what} is not JSON") from None
    if not isinstance(doc, Mapping) or doc.get("apiVersion") != api_version:
        raise InventoryError(f"the repository's {what} is not {api_version}")
    entries = doc.get(member)
    if not isinstance(entries, list):
        raise InventoryError(f"the repository's {what} lists no {member}")
    return [dict(e) for e in entries if isinstance(e, Mapping)]


def select(entries: Sequence[Mapping[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The entries asked for: all, or the one named."""
    return [dict(e) for e in entries if name is None or e.get("name") == name]


def stale_consumers(entries: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for e in entries for c in e.get("consumers") or ()
               if c.get("state") != "current")
