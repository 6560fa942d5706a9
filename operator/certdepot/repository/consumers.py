"""Who holds which serial of a managed certificate, and when each last checked in.

A consumer is (managed certificate, tenant, account, cluster, resource). The operator names
its cluster and the CertificateDownloads a download serves in two request headers (see
docs/protocol.md, "Consumer identity"); other clients are one consumer per account.

- The serial a consumer holds changes only at a key delivery, which is an authenticated
  request (the private-key fetch of the ordering account).
- A ``renewalInfo`` poll is a check-in: it refreshes ``last_checkin`` of the consumers of
  that account (and cluster) that hold the polled certificate. ARI is an unauthenticated
  GET, so the account it names is a label, not a proof; a forged poll can refresh a
  timestamp but never make a consumer look as if it held a newer serial.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from certdepot.repository import store as tables
from certdepot.repository.state import Repo

CLUSTER_HEADER = "certdepot-cluster"
RESOURCES_HEADER = "certdepot-resources"
ACCOUNT_HEADER = "certdepot-account"
#: At most this many resources are recorded per delivery (a header beyond it is cut).
MAX_RESOURCES = 200

_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_DNS1123 = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_RESOURCE = re.compile(rf"^{_DNS1123}/{_DNS1123}(?:\.{_DNS1123})*$")


@dataclass(frozen=True)
class Identity:
    cluster: str = ""
    resources: tuple[str, ...] = ()


def identity_from(headers: Mapping[str, str]) -> Identity:
    """The consumer identity a request declares; malformed values are dropped (they label
    the inventory only, and a download must not fail on a label)."""
    cluster = headers.get(CLUSTER_HEADER, "").strip()
    if not _CLUSTER.match(cluster):
        cluster = ""
    resources: list[str] = []
    for item in headers.get(RESOURCES_HEADER, "")[:MAX_RESOURCES * 320].split():
        if len(item) <= 317 and _RESOURCE.match(item) and item not in resources:
            resources.append(item)
        if len(resources) >= MAX_RESOURCES:
            break
    return Identity(cluster, tuple(resources))


def delivered(repo: Repo, account: Mapping[str, Any], cert: Mapping[str, Any],
              who: Identity) -> None:
    """A key delivery: each consumer it names now holds ``cert``'s serial."""
    if not cert["managed_name"]:
        return
    now = repo.clock()
    for resource in who.resources or ("",):
        key = {"managed_name": cert["managed_name"], "account_id": account["id"],
               "cluster": who.cluster, "resource": resource}
        held = {"cert_id": cert["id"], "serial": cert["serial"], "delivered": now,
                "last_checkin": now, "tenant": account.get("tenant")}
        # Most deliveries go to a consumer already recorded: one UPDATE, not a read first.
        if not repo.store.run("consumer-delivered", _update_consumer,
                              **{f"p_{k}": v for k, v in key.items()}, **held):
            repo.store.insert(tables.consumers, **key, **held)


def _update_consumer() -> Any:
    t = tables.consumers
    return t.update().where(*(t.c[k] == sa.bindparam(f"p_{k}") for k in _IDENTITY))


# A consumer's identity (uq_consumers_identity).
_IDENTITY = ("managed_name", "account_id", "cluster", "resource")


def checked_in(repo: Repo, cert: Mapping[str, Any], headers: Mapping[str, str]) -> int:
    """An ARI poll for ``cert`` by the account (and cluster) the headers name."""
    account_url = headers.get(ACCOUNT_HEADER, "")
    prefix = repo.urls.account("")
    if not cert["managed_name"] or not account_url.startswith(prefix):
        return 0
    conds = [tables.consumers.c.cert_id == cert["id"],
             tables.consumers.c.account_id == account_url[len(prefix):]]
    cluster = identity_from(headers).cluster
    if cluster:
        conds.append(tables.consumers.c.cluster == cluster)
    with repo.store.tx() as conn:
        result = conn.execute(sa.update(tables.consumers).where(*conds)
                              .values(last_checkin=repo.clock()))
        return int(result.rowcount or 0)


def of_certificate(repo: Repo, name: str) -> list[dict[str, Any]]:
    return repo.store.select(tables.consumers, tables.consumers.c.managed_name == name,
                             order_by=tables.consumers.c.id)


def counts(repo: Repo, name: str, current_id: str | None) -> tuple[int, int]:
    """(consumers, consumers on a serial other than the current one) of ``name``."""
    rows = of_certificate(repo, name)
    return len(rows), sum(1 for r in rows if r["cert_id"] != current_id)
