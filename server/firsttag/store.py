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
    Boolean,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateColumn

metadata = MetaData()

# 64-bit row IDs (BIGSERIAL on PostgreSQL: 2^31 rows is weeks of sustained traffic);
# on SQLite, INTEGER PRIMARY KEY is already the 64-bit rowid.
Id = BigInteger().with_variant(Integer, "sqlite")

sites = Table(
    "sites",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("site_key", String(64), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("origins", Text, nullable=False),  # JSON list of "scheme://host[:port]"
    Column("settings", Text, nullable=False, server_default="{}"),  # JSON, see sites.Settings
    Column("created_at", String(32), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site_id", String(32), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("visitor_id", String(64), nullable=False),
    Column("click_id", String(190)),
    Column("url", Text),
    Column("referrer", Text),
    Column("user_agent", Text),
    Column("bot", Boolean, nullable=False, server_default=false()),  # see firsttag/bots.py
    Column("created_at", String(32), nullable=False),
    # Where the visit came from, parsed by the worker (firsttag/touches.py); NULL on rows
    # stored before these columns existed.
    Column("channel", String(32)),
    Column("source", String(255)),
    Column("medium", String(255)),
    Column("campaign", String(255)),
    Column("term", String(255)),
    Column("content", String(255)),
    Column("click_id_type", String(16)),  # gclid, fbclid, …, dub_id
    Column("click_id_value", String(255)),
    Column("landing_page", Text),  # the path, without the query
    Column("device", String(16)),  # desktop, mobile, tablet, bot, other
    UniqueConstraint("site_id", "session_id", name="uq_sessions_site_session"),
    # Attribution looks up a visitor's, or a click's, sessions in a time window.
    Index("ix_sessions_visitor", "site_id", "visitor_id", "created_at"),
    Index("ix_sessions_click", "site_id", "click_id", "created_at"),
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

# Every outcome, whatever request reported it: browser beacons, orders, leads, sales and
# server conversions. ``dedup_key`` is the idempotency key, namespaced by what it means
# (``browser:<id>``, ``order:<orderId>``, ``lead:["cust","Sign Up"]``, ``sale:<invoiceId>``,
# ``conversion:<order_id>``); ``fingerprint`` holds the fields a re-send must repeat.
# Trust: ``source`` says who reported an outcome, and so whether its value is money a back
# end confirmed with the secret key or a claim a browser made with the public key (see
# BROWSER_SOURCES). It is set by the endpoint that received the event, never by its body.
conversions = Table(
    "conversions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site_id", String(32), nullable=False),
    Column("dedup_key", String(512), nullable=False),
    Column("kind", String(16), nullable=False, server_default="conversion"),  # lead|sale|…
    Column("source", String(16), nullable=False),  # browser|order|track|event|server
    Column("name", String(255), nullable=False),
    Column("visitor_id", String(190)),
    Column("session_id", String(190)),
    Column("click_id", String(190)),
    Column("customer_id", String(190)),
    Column("order_id", String(190)),
    Column("value", BigInteger),  # minor units of ``currency``
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(3)),
    Column("status", String(16)),  # orders only
    Column("state_version", String(80)),  # orders: a newer version wins, see conversions.py
    Column("details", Text),  # JSON: order items, store IDs, lead event name, …
    Column("metadata", Text),  # JSON object
    Column("fingerprint", Text),  # JSON object
    Column("attribution", Text),  # JSON object, frozen when first stored
    Column("url", Text),
    Column("occurred_at", String(32), nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("updated_at", String(32)),
    # The session each attribution model credits (analytics/attribution.py), frozen with
    # ``attribution``; reports join sessions on them to group conversions by channel.
    Column("first_touch_session_id", String(64)),
    Column("last_touch_session_id", String(64)),
    Column("last_non_direct_session_id", String(64)),
    Column("attribution_type", String(16)),  # direct, assisted or none (attribution.type)
    UniqueConstraint("site_id", "dedup_key", name="uq_conversions_site_dedup"),
    Index("ix_conversions_time", "site_id", "occurred_at"),
)

#: Sources sent with the publishable key: their values are reported by a browser, not
#: confirmed, and count as revenue only where a site opts in (Settings.count_browser_revenue).
BROWSER_SOURCES = ("browser",)

customers = Table(
    "customers",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("external_id", String(190), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("email", String(255)),
    Column("avatar", Text),
    Column("click_id", String(190)),
    Column("created_at", String(32), nullable=False),
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
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an older firsttag up to date.

    Schema changes so far only add columns (nullable or with a default) and indexes, so
    upgrading is additive: ALTER TABLE … ADD COLUMN for what an existing table lacks.
    """
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    ddl = CreateColumn(column).compile(dialect=engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            for index in table.indexes:
                index.create(conn, checkfirst=True)


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


def upsert_customers(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Create customers; an existing one keeps its data but gains a click it lacked."""
    if not rows:
        return
    stmt = _dialect_insert(conn, customers)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "external_id"],
        set_={"click_id": func.coalesce(customers.c.click_id, stmt.excluded.click_id)},
    )
    conn.execute(stmt, rows)


def upsert_order(conn: Any, row: dict[str, Any]) -> None:
    """Store an order, or move it to a newer state; an older state never replaces a newer."""
    stmt = _dialect_insert(conn, conversions).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "dedup_key"],
        set_={
            "status": stmt.excluded.status,
            "refunded": stmt.excluded.refunded,
            "state_version": stmt.excluded.state_version,
            "updated_at": stmt.excluded.updated_at,
        },
        where=stmt.excluded.state_version > conversions.c.state_version,
    )
    conn.execute(stmt)


def customer_click(conn: Any, site_id: str, external_id: str) -> str | None:
    """The click ID stored with a customer, if any."""
    t = customers
    return conn.execute(
        select(t.c.click_id).where(t.c.site_id == site_id, t.c.external_id == external_id)
    ).scalar()


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
        "bot": bool(row["bot"]),
        "createdAt": row["created_at"],
        "verified": row["verified_at"] is not None,
        "verifiedAt": row["verified_at"],
        # Where the visit came from (firsttag/touches.py); null before the worker parsed it.
        "touch": {
            "channel": row["channel"],
            "source": row["source"],
            "medium": row["medium"],
            "campaign": row["campaign"],
            "term": row["term"],
            "content": row["content"],
            "clickIdType": row["click_id_type"],
            "clickIdValue": row["click_id_value"],
            "landingPage": row["landing_page"],
            "device": row["device"],
        },
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
    details = json.loads(row["details"]) if row["details"] else {}
    return {
        "id": row["id"],
        "kind": row["kind"],
        "source": row["source"],
        "name": row["name"],
        "eventId": row["dedup_key"].split(":", 1)[1],
        "visitorId": row["visitor_id"],
        "sessionId": row["session_id"],
        "clickId": row["click_id"],
        "customerExternalId": row["customer_id"],
        "orderId": row["order_id"],
        "value": row["value"],
        # False: a value a browser reported, shown apart from revenue (see analytics).
        "confirmed": row["source"] not in BROWSER_SOURCES,
        "refunded": row["refunded"],
        "currency": row["currency"],
        "status": row["status"],
        "details": details,
        "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
        "attribution": json.loads(row["attribution"]) if row["attribution"] else None,
        "url": row["url"],
        "occurredAt": row["occurred_at"],
        "receivedAt": row["received_at"],
        "updatedAt": row["updated_at"],
    }


def find_conversion(engine: Engine, site_id: str, dedup_key: str) -> dict[str, Any] | None:
    """The stored record for an idempotency key: fingerprint, state and first time."""
    c = conversions
    query = select(
        c.c.fingerprint, c.c.status, c.c.refunded, c.c.state_version, c.c.received_at
    ).where(c.c.site_id == site_id, c.c.dedup_key == dedup_key)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {
        "fields": json.loads(row["fingerprint"]) if row["fingerprint"] else {},
        "state": {"status": row["status"], "refunded": row["refunded"]} if row["status"] else None,
        "version": row["state_version"],
        "firstReceivedAt": row["received_at"],
    }


def conversion_by_key(engine: Engine, site_id: str, dedup_key: str) -> dict[str, Any] | None:
    """One stored conversion in API form, by its idempotency key."""
    c = conversions
    with engine.connect() as conn:
        row = (
            conn.execute(select(c).where(c.c.site_id == site_id, c.c.dedup_key == dedup_key))
            .mappings()
            .first()
        )
    return _conversion_out(row) if row else None


def customer_exists(engine: Engine, site_id: str, external_id: str) -> bool:
    """True when the customer is stored."""
    t = customers
    with engine.connect() as conn:
        found = conn.execute(
            select(t.c.external_id).where(t.c.site_id == site_id, t.c.external_id == external_id)
        ).first()
    return found is not None
