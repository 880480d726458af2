"""Dub's customer routes: a derived public ID on customers, and a record of erasures.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firsttag.customer_ids import customer_id

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``customers.public_id`` (filled for existing rows) and ``customer_erasures``."""
    op.create_table(
        "customer_erasures",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("erased_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "public_id"),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_customers_public", ["site_id", "public_id"], unique=False)
    # Customers stored before this revision get the same derived ID the worker now writes,
    # so GET /customers/cus_… finds them too.
    customers = sa.table(
        "customers",
        sa.column("site_id", sa.String),
        sa.column("external_id", sa.String),
        sa.column("public_id", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(customers.c.site_id, customers.c.external_id)).all()
    for site_id, external_id in rows:
        conn.execute(
            customers.update()
            .where(customers.c.site_id == site_id, customers.c.external_id == external_id)
            .values(public_id=customer_id(site_id, external_id))
        )


def downgrade() -> None:
    """Undo 0002."""
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_public")
        batch_op.drop_column("public_id")
    op.drop_table("customer_erasures")
