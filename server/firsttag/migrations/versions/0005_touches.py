"""Touches: where each visit came from, and which visits each conversion credits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from firsttag import touches

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TOUCH_COLUMNS = {
    "channel": sa.String(length=32),
    "source": sa.String(length=255),
    "medium": sa.String(length=255),
    "campaign": sa.String(length=255),
    "term": sa.String(length=255),
    "content": sa.String(length=255),
    "click_id_type": sa.String(length=16),
    "click_id_value": sa.String(length=255),
    "landing_page": sa.Text(),
    "device": sa.String(length=16),
}
_CREDIT_COLUMNS = {
    "first_touch_session_id": sa.String(length=64),
    "last_touch_session_id": sa.String(length=64),
    "last_non_direct_session_id": sa.String(length=64),
    "attribution_type": sa.String(length=16),
}
_BATCH = 5_000


def upgrade() -> None:
    """Add the touch columns of sessions and the credit columns of conversions; classify
    the sessions already stored, as the worker now classifies new ones."""
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        for name, type_ in _CREDIT_COLUMNS.items():
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        for name, type_ in _TOUCH_COLUMNS.items():
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    _classify_stored_sessions(op.get_bind())


def _classify_stored_sessions(conn: sa.Connection) -> None:
    # Without this, visits stored before the upgrade would all report as "(none)". The
    # conversions' credit columns stay empty for old rows: their attribution was frozen
    # when they were stored, and re-attributing them would change reported history.
    sites = sa.table("sites", sa.column("id"), sa.column("origins"))
    origins = {
        site_id: tuple(json.loads(raw or "[]"))
        for site_id, raw in conn.execute(sa.select(sites.c.id, sites.c.origins))
    }
    s = sa.table(
        "sessions",
        sa.column("id"),
        sa.column("site_id"),
        sa.column("url"),
        sa.column("referrer"),
        sa.column("user_agent"),
        sa.column("bot"),
        sa.column("click_id"),
        *(sa.column(name) for name in _TOUCH_COLUMNS),
    )
    last = -1
    while True:
        rows = conn.execute(
            sa.select(s.c.id, s.c.site_id, s.c.url, s.c.referrer, s.c.user_agent, s.c.bot,
                      s.c.click_id)
            .where(s.c.id > last)
            .order_by(s.c.id)
            .limit(_BATCH)
        ).all()  # fmt: skip
        if not rows:
            return
        for id_, site_id, url, referrer, user_agent, bot, click_id in rows:
            touch = touches.parse(url, referrer, origins.get(site_id, ()), click_id)
            values = {**touch.columns(), "device": touches.device(user_agent, bool(bot))}
            conn.execute(s.update().where(s.c.id == id_).values(**values))
        last = rows[-1][0]


def downgrade() -> None:
    """Undo 0005."""
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        for name in reversed(_TOUCH_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        for name in reversed(_CREDIT_COLUMNS):
            batch_op.drop_column(name)
