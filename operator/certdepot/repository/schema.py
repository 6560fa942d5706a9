"""The repository's tables (SQLAlchemy Core) and the ordered history of their migrations.

One definition for both back ends (SQLite, PostgreSQL); ``Store.migrate`` applies the steps
in ``MIGRATIONS`` a database has not had yet. Times are float epoch seconds. A versioned
table and a list of steps, not alembic: the list is the history, and it is short.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer))
nonces = sa.Table(
    "nonces", metadata,
    sa.Column("value", sa.String(64), primary_key=True),
    sa.Column("expires", sa.Float, nullable=False, index=True),
)
tenants = sa.Table(
    "tenants", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("eab_kid", sa.String(100), unique=True, nullable=False),
    sa.Column("eab_key", sa.LargeBinary, nullable=False),  # KeyVault blob
    sa.Column("created", sa.Float, nullable=False),
    # When the EAB key was last replaced (``tenant rotate``); None: never. Added by
    # _migrate_tenant_rotation.
    sa.Column("rotated", sa.Float, nullable=True),
)
accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thumbprint", sa.String(100), unique=True, nullable=False),
    sa.Column("jwk", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("contact", sa.JSON, nullable=False),
    sa.Column("tenant", sa.String(200), nullable=True),
    sa.Column("created", sa.Float, nullable=False),
)
orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("cert_id", sa.String(64), nullable=True),
    sa.Column("created", sa.Float, nullable=False),
)
authzs = sa.Table(
    "authzs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("identifier", sa.JSON, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("wildcard", sa.Boolean, nullable=False, default=False),
    sa.Column("challenges", sa.JSON, nullable=False),
)
certificates = sa.Table(
    "certificates", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("managed_name", sa.String(200), nullable=True, index=True),
    sa.Column("order_id", sa.String(64), nullable=True, index=True),
    sa.Column("issuer", sa.String(200), nullable=False),
    sa.Column("serial", sa.String(80), nullable=False, index=True),
    sa.Column("ari_id", sa.String(300), nullable=False, index=True),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("not_after", sa.Float, nullable=False),
    sa.Column("chain_pem", sa.Text, nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=True),  # KeyVault blob; None: client holds it
    sa.Column("account_id", sa.String(64), nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.Float, nullable=False),
)
managed = sa.Table(
    "managed", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("current_cert_id", sa.String(64), nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt", sa.Float, nullable=False, default=0.0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("renew_requested", sa.Boolean, nullable=False, default=False),
)
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(200), nullable=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("managed_name", sa.String(200), nullable=True),
    sa.Column("cert_id", sa.String(64), nullable=False),
    sa.Column("serial", sa.String(80), nullable=False),
    sa.Column("delivered", sa.Float, nullable=False),
)
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)
http01_tokens = sa.Table(
    "http01_tokens", metadata,
    sa.Column("token", sa.String(200), primary_key=True),
    sa.Column("key_authorization", sa.Text, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)
blobs = sa.Table(  # sealed or plain named values: generated CA roots, cancellations, ...
    "blobs", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
)

# A certificate's revocation as decided here (rotation.py): when, why, the renewalInfo
# window fixed at that moment (so every poll answers the same past window), what replaced
# it, and what the upstream CA answered when told.
revocations = sa.Table(
    "revocations", metadata,
    sa.Column("cert_id", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Integer, nullable=False),  # RFC 5280 CRLReason code
    sa.Column("revoked_at", sa.Float, nullable=False),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("replaced_by", sa.String(64), nullable=True),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("upstream", sa.String(500), nullable=True),  # the CA's answer, or why not told
)
# Who holds which serial of a managed certificate now (inventory): one row per consumer,
# updated at each key delivery (the serial) and ARI poll (the check-in).
consumers = sa.Table(
    "consumers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("managed_name", sa.String(200), nullable=False, index=True),
    sa.Column("tenant", sa.String(200), nullable=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("cluster", sa.String(253), nullable=False),  # "" when not sent
    sa.Column("resource", sa.String(320), nullable=False),  # namespace/name, "" when not sent
    sa.Column("cert_id", sa.String(64), nullable=False),
    sa.Column("serial", sa.String(80), nullable=False),
    sa.Column("delivered", sa.Float, nullable=False),
    sa.Column("last_checkin", sa.Float, nullable=False),
    sa.UniqueConstraint("managed_name", "account_id", "cluster", "resource",
                        name="uq_consumers_identity"),
)

_V1 = [schema_version, nonces, tenants, accounts, orders, authzs, certificates, managed,
       deliveries, leases, http01_tokens, blobs]


def _migrate_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=_V1)


def _migrate_rotation(conn: Connection) -> None:
    metadata.create_all(conn, tables=[revocations, consumers])


def _migrate_tenant_rotation(conn: Connection) -> None:
    # _migrate_v1 creates ``tenants`` from the current definition, which has the column
    # already: add it only to a table made before it existed.
    if "rotated" not in {c["name"] for c in sa.inspect(conn).get_columns("tenants")}:
        conn.execute(sa.text("ALTER TABLE tenants ADD COLUMN rotated FLOAT"))


# Ordered history: index + 1 is the version a step produces. Append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_migrate_v1, _migrate_rotation,
                                                  _migrate_tenant_rotation]
