"""The SQL store: schema, idempotent writes and the reads the API serves.

SQLAlchemy Core keeps one code path for SQLite (the embedded default) and PostgreSQL.
Every table written by the pipeline has a unique key that makes a re-delivered event a
no-op, so the worker may replay a batch after a crash without counting anything twice.
Timestamps are stored as ISO 8601 UTC strings (``2026-04-10T12:34:56.000000Z``), which sort
correctly as text in both databases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

sites = Table(
    "sites",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("site_key", String(64), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("origins", Text, nullable=False),  # JSON list of "scheme://host[:port]"
    Column("created_at", String(32), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site_id", String(32), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("visitor_id", String(64), nullable=False),
    Column("click_id", String(190)),
    Column("url", Text),
    Column("referrer", Text),
    Column("user_agent", Text),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("site_id", "session_id", name="uq_sessions_site_session"),
)

# Kept apart from sessions so a verification never depends on the order in which the
# worker sees it and the session's registration: both are plain idempotent inserts.
session_verifications = Table(
    "session_verifications",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("verified_at", String(32), nullable=False),
)

conversions = Table(
    "conversions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site_id", String(32), nullable=False),
    Column("dedup_key", String(255), nullable=False),
    Column("source", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("visitor_id", String(64)),
    Column("session_id", String(64)),
    Column("click_id", String(190)),
    Column("order_id", String(190)),
    Column("value", BigInteger),  # minor units of ``currency``
    Column("currency", String(3)),
    Column("metadata", Text),  # JSON object
    Column("url", Text),
    Column("occurred_at", String(32), nullable=False),
    Column("received_at", String(32), nullable=False),
    UniqueConstraint("site_id", "dedup_key", name="uq_conversions_site_dedup"),
)


def utcnow() -> str:
    """Return the current time in the store's timestamp format."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """Format an aware datetime as the store's ISO 8601 UTC string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def connect(database_url: str) -> Engine:
    """Create an engine for ``database_url`` and make sure the schema exists."""
    engine = create_engine(database_url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
    metadata.create_all(engine)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while the worker writes; busy_timeout makes a
    # writer wait for a lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def insert_ignoring_duplicates(
    conn: Any, table: Table, rows: list[dict[str, Any]], keys: Iterable[str]
) -> int:
    """Insert ``rows``; rows whose ``keys`` already exist are skipped. Returns rows inserted."""
    if not rows:
        return 0
    stmt = _dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    return conn.execute(stmt, rows).rowcount or 0


def record_verifications(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Store session verifications, keeping the earliest time when one arrives twice."""
    if not rows:
        return
    table = session_verifications
    stmt = _dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "session_id"],
        set_={"verified_at": stmt.excluded.verified_at},
        where=stmt.excluded.verified_at < table.c.verified_at,
    )
    conn.execute(stmt, rows)


def _dialect_insert(conn: Any, table: Table) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise RuntimeError(f"unsupported database: {name}")


# -- reads -------------------------------------------------------------------------------


def get_session(engine: Engine, site_id: str, session_id: str) -> dict[str, Any] | None:
    """Return one stored session of ``site_id`` in API form, or None."""
    s, v = sessions, session_verifications
    query = (
        select(s, v.c.verified_at)
        .select_from(
            s.outerjoin(v, (v.c.site_id == s.c.site_id) & (v.c.session_id == s.c.session_id))
        )
        .where(s.c.site_id == site_id, s.c.session_id == session_id)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {
        "sessionId": row["session_id"],
        "visitorId": row["visitor_id"],
        "clickId": row["click_id"],
        "url": row["url"],
        "referrer": row["referrer"],
        "userAgent": row["user_agent"],
        "createdAt": row["created_at"],
        "verified": row["verified_at"] is not None,
        "verifiedAt": row["verified_at"],
    }


def list_conversions(
    engine: Engine, site_id: str, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """Return up to ``limit`` conversions newest first, and the cursor of the next page."""
    c = conversions
    query = select(c).where(c.c.site_id == site_id).order_by(c.c.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(c.c.id < before_id)
    with engine.connect() as conn:
        rows = list(conn.execute(query).mappings())
    next_cursor = rows[limit - 1]["id"] if len(rows) > limit else None
    return [_conversion_out(r) for r in rows[:limit]], next_cursor


def _conversion_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "name": row["name"],
        "eventId": row["dedup_key"].split(":", 1)[1],
        "visitorId": row["visitor_id"],
        "sessionId": row["session_id"],
        "clickId": row["click_id"],
        "orderId": row["order_id"],
        "value": row["value"],
        "currency": row["currency"],
        "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
        "url": row["url"],
        "occurredAt": row["occurred_at"],
        "receivedAt": row["received_at"],
    }
