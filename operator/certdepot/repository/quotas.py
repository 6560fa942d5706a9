"""Quotas: how much one client may make the repository store (``limits`` in the
configuration; defaults in docs/operations.md, "Limits").

Each check runs before the request writes anything, so a refused request leaves the store
as it was (its nonce aside). Without them one account made 10,000 authorization rows in
1.2 s (1,000 identifiers per order), one EAB credential made accounts without end, and a
30 kB ``replaces`` was stored as sent.

Refusals: a request that is malformed whatever the server's state (too many identifiers,
an overlong value, a ``replaces`` naming no certificate of this account) is ``malformed``;
one refused only because of what the client already holds is ``rateLimited`` (429 with
Retry-After), as RFC 8555 §6.7 defines it. Each is counted in
``certdepot_repository_policy_refusals_total{step,reason}`` with a reason below.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.problems import AcmeProblem
from certdepot.repository import store as tables
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.quotas")

# Reason codes (metric label values: a fixed set).
IDENTIFIERS = "quota-identifiers-per-order"
VALUE_LENGTH = "quota-value-length"
OPEN_ORDERS = "quota-open-orders"
ACCOUNTS = "quota-accounts-per-eab-key"
UNBOUND_ACCOUNTS = "quota-accounts-without-eab"
REPLACES = "replaces-not-replaceable"

#: Orders that still hold authorizations a client could act on.
OPEN_ORDER_STATUSES = ("pending", "ready")


def _open_orders() -> Any:
    """An account's open orders, counted at every newOrder (built once: Store.scalar)."""
    o = tables.orders
    return (sa.select(sa.func.count()).select_from(o)
            .where(o.c.account_id == sa.bindparam("p_account"),
                   o.c.status.in_(OPEN_ORDER_STATUSES), o.c.expires > sa.bindparam("p_now")))


def check_new_account(repo: Repo, tenant: str) -> None:
    """Before an account is bound to ``tenant`` (one EAB credential per tenant)."""
    limit = repo.config.limits.accounts_per_eab_key
    held = repo.store.count(tables.accounts, tables.accounts.c.tenant == tenant)
    if held >= limit:
        repo.count_refusal("newAccount", ACCOUNTS)
        log.info("tenant %s: account refused, %d accounts exist (limit %d)", tenant, held,
                 limit)
        raise AcmeProblem("rateLimited", f"this External Account Binding key already has "
                          f"{held} accounts (limit {limit}); reuse one")


def check_unbound_account(repo: Repo) -> None:
    """Before an account is registered without EAB (``eabRequired: false``): anyone may
    do that, so the table they fill is bounded as a whole."""
    limit = repo.config.limits.accounts_without_eab
    held = repo.store.count(tables.accounts, tables.accounts.c.tenant.is_(None))
    if held >= limit:
        repo.count_refusal("newAccount", UNBOUND_ACCOUNTS)
        log.warning("account without EAB refused: %d exist (limits.accountsWithoutEab %d)",
                    held, limit)
        raise AcmeProblem("rateLimited", "this repository holds as many accounts without "
                          "External Account Binding as it accepts; register with EAB "
                          "credentials or ask its administrator")


def check_new_order(repo: Repo, account: dict[str, Any], payload: dict[str, Any]) -> None:
    """Before newOrder does any work: sizes first (no store access), then open orders."""
    lim = repo.config.limits
    idents = payload.get("identifiers")
    if isinstance(idents, list) and len(idents) > lim.identifiers_per_order:
        repo.count_refusal("newOrder", IDENTIFIERS)
        raise AcmeProblem("malformed", f"an order may name at most {lim.identifiers_per_order}"
                          f" identifiers, not {len(idents)}")
    for key, limit in (("profile", lim.max_profile_length),
                       ("replaces", lim.max_replaces_length)):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            raise AcmeProblem("malformed", f"{key} must be a string")
        if isinstance(value, str) and len(value) > limit:
            repo.count_refusal("newOrder", VALUE_LENGTH)
            raise AcmeProblem("malformed", f"{key} longer than {limit} characters")
    held = int(repo.store.scalar("open-orders", _open_orders, p_account=account["id"],
                                 p_now=repo.clock()) or 0)
    if held >= lim.pending_orders_per_account:
        repo.count_refusal("newOrder", OPEN_ORDERS)
        log.info("account %s: order refused, %d open orders (limit %d)", account["id"], held,
                 lim.pending_orders_per_account)
        raise AcmeProblem("rateLimited", f"this account has {held} pending or ready orders "
                          f"(limit {lim.pending_orders_per_account}); finalize or let them "
                          "expire")


def check_replaces(repo: Repo, account: dict[str, Any], cert_id: str,
                   names: list[str]) -> None:
    """RFC 9773 §5: ``replaces`` names a certificate this account may replace (issued to
    it, or to another account of its tenant) sharing at least one identifier with the
    order. One answer for "no such certificate" and "someone else's": not an oracle."""
    rows = repo.store.find(tables.certificates, ari_id=cert_id) if cert_id else []
    for row in rows:
        if _may_replace(repo, account, row) and set(names) & _dns_names(row):
            return
    repo.count_refusal("newOrder", REPLACES)
    raise AcmeProblem("malformed", "replaces does not name a certificate of this account "
                      "that shares an identifier with this order")


def _may_replace(repo: Repo, account: dict[str, Any], cert: dict[str, Any]) -> bool:
    owner_id = cert.get("account_id")
    if owner_id is None:
        return False  # a managed certificate: renewed by the repository, not by clients
    if owner_id == account["id"]:
        return True
    owner = repo.store.get(tables.accounts, owner_id)
    return (owner is not None and account.get("tenant") is not None
            and owner["tenant"] == account["tenant"])


def _dns_names(cert: dict[str, Any]) -> set[str]:
    try:
        leaf = crypto.parse_pem_chain(cert["chain_pem"])[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return set()
    return {n.lower() for n in san.value.get_values_for_type(x509.DNSName)}
