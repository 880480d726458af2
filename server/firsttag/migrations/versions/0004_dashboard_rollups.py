"""Dashboard rollups per site and UTC quarter hour, counted once from the stored rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:34:29.368268
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firsttag.analytics import rollups

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the rollup tables and indexes, then count the rollups of the rows already stored."""
    op.create_table(
        "conversion_rollups",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("value_high", sa.BigInteger(), nullable=False),
        sa.Column("value_low", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site_id", "bucket", "kind", "source", "name", "status", "currency"
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "session_rollups",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.Column("clicked", sa.Boolean(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "bucket", "bot", "clicked"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index("ix_conversions_customer", ["site_id", "customer_id"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_time", ["site_id", "created_at"], unique=False)

    # The worker keeps the rollups from now on; the rows stored before this revision are
    # counted here, in the migration's transaction, so the overview is right at once.
    rollups.rebuild(op.get_bind(), tables=("conversion_rollups", "session_rollups"))


def downgrade() -> None:
    """Undo 0004."""
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_time")

    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index("ix_conversions_customer")

    op.drop_table("session_rollups")
    op.drop_table("conversion_rollups")
