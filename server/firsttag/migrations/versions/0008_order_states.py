"""Order history: every reported state of an order, for the conversion's detail page.

Until now only an order's newest state was kept on its conversion row. Orders stored
before this revision start their history with that state, reported at the row's
``updated_at`` (the steps before it were not kept).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 21:44:52.751461
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``order_states`` and give each stored order its current state."""
    op.create_table(
        "order_states",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=512), nullable=False),
        sa.Column("state_version", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "dedup_key", "state_version"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO order_states (site_id, dedup_key, state_version, status, refunded, "
        "received_at) SELECT site_id, dedup_key, state_version, status, "
        "COALESCE(refunded, 0), COALESCE(updated_at, received_at) FROM conversions "
        "WHERE status IS NOT NULL AND state_version IS NOT NULL"
    )


def downgrade() -> None:
    """Undo 0008 (the history goes; the conversion rows keep the newest state)."""
    op.drop_table("order_states")
