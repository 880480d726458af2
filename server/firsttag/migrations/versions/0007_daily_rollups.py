"""Dashboard rollups per local day of each site's zone, replacing the quarter-hour ones.

The quarter-hour rollups (0004, 0006) barely aggregated many-valued touch dimensions, so a
big site's overview read millions of rows; days of the site's own zone read 30 per key for
a 30-day page. The new tables are counted once from the stored rows, and each site's zone
is recorded in ``rollup_zones`` (see firsttag/analytics/rollups.py). Revisions 0004 and
0006 ask today's code to rebuild tables it no longer knows: a no-op, as this one counts.

Downgrading recreates the old tables empty: the older release's dashboard shows zeros
until its ``rollups.rebuild`` is run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 21:00:28.652244
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from firsttag import touches
from firsttag.analytics import rollups

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the daily rollup tables, count them from the rows, drop the quarter-hour ones."""
    op.create_table(
        "conversion_days",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("value_high", sa.BigInteger(), nullable=False),
        sa.Column("value_low", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "day", "kind", "source", "name", "status", "currency"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rollup_zones",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_table(
        "session_days",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.Column("clicked", sa.Boolean(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "day", "bot", "clicked"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "touch_conversion_days",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("filter_dimension", sa.String(length=16), nullable=False),
        sa.Column("filter_value", sa.Text(), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("value_high", sa.BigInteger(), nullable=False),
        sa.Column("value_low", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site_id",
            "filter_dimension",
            "filter_value",
            "dimension",
            "day",
            "value",
            "kind",
            "source",
            "name",
            "status",
            "currency",
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "touch_session_days",
        sa.Column("site_id", sa.String(length=32), nullable=False),
        sa.Column("filter_dimension", sa.String(length=16), nullable=False),
        sa.Column("filter_value", sa.Text(), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("click_sessions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site_id", "filter_dimension", "filter_value", "dimension", "day", "value"
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("touch_session_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touch_session_rollups_bucket"))

    op.drop_table("touch_session_rollups")
    op.drop_table("session_rollups")
    with op.batch_alter_table("touch_conversion_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touch_conversion_rollups_bucket"))

    op.drop_table("touch_conversion_rollups")
    op.drop_table("conversion_rollups")
    _clip_touches(op.get_bind())
    rollups.rebuild(op.get_bind())


def _clip_touches(bind: sa.engine.Connection) -> None:
    """Cut touch values stored before they were limited in bytes (firsttag.touches.clip).

    A rollup row is keyed by two of them; longer ones in a four-byte script would make an
    index entry PostgreSQL refuses, and this revision's count (and later the worker) fail.
    """
    limits = {
        "landing_page": touches.MAX_PATH,
        "source": touches.MAX_VALUE,
        "medium": touches.MAX_VALUE,
        "campaign": touches.MAX_VALUE,
    }
    s = sa.table("sessions", *(sa.column(c) for c in ("site_id", "session_id", *limits)))

    def size(column: sa.ColumnElement) -> sa.ColumnElement:
        if bind.dialect.name == "postgresql":
            return sa.func.octet_length(column)
        return sa.func.length(sa.cast(column, sa.LargeBinary))

    long = (
        bind.execute(sa.select(s).where(sa.or_(*(size(s.c[k]) > n for k, n in limits.items()))))
        .mappings()
        .all()
    )
    for row in long:
        clipped = {k: touches.clip(row[k], n) if row[k] else row[k] for k, n in limits.items()}
        bind.execute(
            sa.update(s)
            .where(s.c.site_id == row["site_id"], s.c.session_id == row["session_id"])
            .values(clipped)
        )


def downgrade() -> None:
    """Undo 0007."""
    op.create_table(
        "conversion_rollups",
        sa.Column("site_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("bucket", sa.VARCHAR(length=16), nullable=False),
        sa.Column("kind", sa.VARCHAR(length=16), nullable=False),
        sa.Column("source", sa.VARCHAR(length=16), nullable=False),
        sa.Column("name", sa.VARCHAR(length=255), nullable=False),
        sa.Column("status", sa.VARCHAR(length=16), nullable=False),
        sa.Column("currency", sa.VARCHAR(length=3), nullable=False),
        sa.Column("conversions", sa.BIGINT(), nullable=False),
        sa.Column("value_high", sa.BIGINT(), nullable=False),
        sa.Column("value_low", sa.BIGINT(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site_id", "bucket", "kind", "source", "name", "status", "currency"
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "touch_conversion_rollups",
        sa.Column("site_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("dimension", sa.VARCHAR(length=16), nullable=False),
        sa.Column("value", sa.TEXT(), nullable=False),
        sa.Column("bucket", sa.VARCHAR(length=16), nullable=False),
        sa.Column("kind", sa.VARCHAR(length=16), nullable=False),
        sa.Column("source", sa.VARCHAR(length=16), nullable=False),
        sa.Column("name", sa.VARCHAR(length=255), nullable=False),
        sa.Column("status", sa.VARCHAR(length=16), nullable=False),
        sa.Column("currency", sa.VARCHAR(length=3), nullable=False),
        sa.Column("conversions", sa.BIGINT(), nullable=False),
        sa.Column("value_high", sa.BIGINT(), nullable=False),
        sa.Column("value_low", sa.BIGINT(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site_id",
            "dimension",
            "value",
            "bucket",
            "kind",
            "source",
            "name",
            "status",
            "currency",
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("touch_conversion_rollups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_touch_conversion_rollups_bucket"),
            ["site_id", "dimension", "bucket"],
            unique=False,
        )

    op.create_table(
        "session_rollups",
        sa.Column("site_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("bucket", sa.VARCHAR(length=16), nullable=False),
        sa.Column("bot", sa.BOOLEAN(), nullable=False),
        sa.Column("clicked", sa.BOOLEAN(), nullable=False),
        sa.Column("sessions", sa.BIGINT(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "bucket", "bot", "clicked"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "touch_session_rollups",
        sa.Column("site_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("dimension", sa.VARCHAR(length=16), nullable=False),
        sa.Column("value", sa.TEXT(), nullable=False),
        sa.Column("bucket", sa.VARCHAR(length=16), nullable=False),
        sa.Column("clicked", sa.BOOLEAN(), nullable=False),
        sa.Column("sessions", sa.BIGINT(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "dimension", "value", "bucket", "clicked"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("touch_session_rollups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_touch_session_rollups_bucket"),
            ["site_id", "dimension", "bucket"],
            unique=False,
        )

    op.drop_table("touch_session_days")
    op.drop_table("touch_conversion_days")
    op.drop_table("session_days")
    op.drop_table("rollup_zones")
    op.drop_table("conversion_days")
