"""The dashboard: users, their per-site grants, and a secret key's grace period.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:30:26.412044
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users``, ``site_grants`` and the previous secret key's hash and expiry."""
    op.create_table(
        "site_grants",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "site_id"),
    )
    with op.batch_alter_table("site_grants", schema=None) as batch_op:
        batch_op.create_index("ix_site_grants_site", ["site_id"], unique=False)

    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_secret_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("previous_secret_expires_at", sa.String(length=32), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_sites_previous_secret_hash"), ["previous_secret_hash"], unique=False
        )


def downgrade() -> None:
    """Undo 0003."""
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sites_previous_secret_hash"))
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret_hash")

    op.drop_table("users")
    with op.batch_alter_table("site_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_site_grants_site")

    op.drop_table("site_grants")
