"""The schema as of firsttag 0.x, before Alembic; adopts databases that older releases made.

A database made by ``metadata.create_all`` (every release before migrations) has the
tables but no ``alembic_version``. Rather than failing on "table exists", this revision
creates only what is missing: absent tables whole, absent columns with ``ADD COLUMN``
(every change before Alembic only added nullable or defaulted columns), absent indexes.
A fresh database gets everything; an older one ends in exactly this shape.

The tables are a frozen copy, not ``firsttag.store.metadata``: later revisions change
the store, and this revision must keep meaning what it meant.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
schema = sa.MetaData()

sa.Table(
    "sites",
    schema,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("site_key", sa.String(64), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("origins", sa.Text, nullable=False),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.String(32), nullable=False),
)
sa.Table(
    "sessions",
    schema,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("visitor_id", sa.String(64), nullable=False),
    sa.Column("click_id", sa.String(190)),
    sa.Column("url", sa.Text),
    sa.Column("referrer", sa.Text),
    sa.Column("user_agent", sa.Text),
    sa.Column("bot", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("site_id", "session_id", name="uq_sessions_site_session"),
    sa.Index("ix_sessions_visitor", "site_id", "visitor_id", "created_at"),
    sa.Index("ix_sessions_click", "site_id", "click_id", "created_at"),
)
sa.Table(
    "session_verifications",
    schema,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("verified_at", sa.String(32), nullable=False),
)
sa.Table(
    "conversions",
    schema,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("dedup_key", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, server_default="conversion"),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("visitor_id", sa.String(190)),
    sa.Column("session_id", sa.String(190)),
    sa.Column("click_id", sa.String(190)),
    sa.Column("customer_id", sa.String(190)),
    sa.Column("order_id", sa.String(190)),
    sa.Column("value", sa.BigInteger),
    sa.Column("refunded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("currency", sa.String(3)),
    sa.Column("status", sa.String(16)),
    sa.Column("state_version", sa.String(80)),
    sa.Column("details", sa.Text),
    sa.Column("metadata", sa.Text),
    sa.Column("fingerprint", sa.Text),
    sa.Column("attribution", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("occurred_at", sa.String(32), nullable=False),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32)),
    sa.UniqueConstraint("site_id", "dedup_key", name="uq_conversions_site_dedup"),
    sa.Index("ix_conversions_time", "site_id", "occurred_at"),
)
sa.Table(
    "customers",
    schema,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("external_id", sa.String(190), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("email", sa.String(255)),
    sa.Column("avatar", sa.Text),
    sa.Column("click_id", sa.String(190)),
    sa.Column("created_at", sa.String(32), nullable=False),
)


def upgrade() -> None:
    """Create what is missing of the initial schema: tables, then columns, then indexes."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    for table in schema.sorted_tables:
        if table.name not in present:
            table.create(bind)
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in columns:
                op.add_column(table.name, column._copy())
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def downgrade() -> None:
    """Drop every table (the data goes with them)."""
    bind = op.get_bind()
    for table in reversed(schema.sorted_tables):
        table.drop(bind, checkfirst=True)
