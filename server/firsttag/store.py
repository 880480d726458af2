"""The SQL store: schema, idempotent writes and the reads the API serves.

SQLAlchemy Core keeps one code path for SQLite (the embedded default) and PostgreSQL.
Every table written by the pipeline has a unique key that makes a re-delivered event a
no-op, so the worker may replay a batch after a crash without counting anything twice.
Timestamps are stored as ISO 8601 UTC strings (``2026-04-10T12:34:56.000000Z``), which sort
correctly as text in both databases.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicCommandError
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
    case,
    create_engine,
    event,
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from firsttag.customer_ids import customer_id as public_customer_id

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
    # Key rotation (sites.rotate_secret_key): the replaced secret key's digest keeps
    # working until ``previous_secret_expires_at`` (a store timestamp), then never again.
    Column("previous_secret_hash", String(64), index=True),
    Column("previous_secret_expires_at", String(32)),
)

# Dashboard users (firsttag/users.py). ``password_hash`` is an Argon2id PHC string.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),  # stored lower-case
    Column("password_hash", String(255), nullable=False),
    Column("created_at", String(32), nullable=False),
)

# Who may see which site, and as what: ``role`` is ``owner`` or ``viewer``.
site_grants = Table(
    "site_grants",
    metadata,
    Column("user_id", Id, primary_key=True),
    Column("site_id", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_site_grants_site", "site_id"),
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
    # Rollup recounts (analytics/rollups.py) and exports read sessions by time.
    Index("ix_sessions_time", "site_id", "created_at"),
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
    # The dashboard's customer page reads one customer's conversions.
    Index("ix_conversions_customer", "site_id", "customer_id"),
)

#: Sources sent with the publishable key: their values are reported by a browser, not
#: confirmed, and count as revenue only where a site opts in (Settings.count_browser_revenue).
BROWSER_SOURCES = ("browser",)

# Every state of an order as reported (status, refunded amount), one row per state version
# (firsttag/conversions.py: the status's time, then rank and amount, so versions sort as
# the order's history); the conversion row holds the newest. A replay adds nothing; a
# version older than the stored one is kept here too, as what the shop said.
order_states = Table(
    "order_states",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("dedup_key", String(512), primary_key=True),
    Column("state_version", String(80), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("refunded", BigInteger, nullable=False),
    Column("received_at", String(32), nullable=False),
    sqlite_with_rowid=False,
)

# Dashboard rollups (firsttag/analytics/rollups.py): per site and local day (``YYYY-MM-DD``
# in the zone named in ``rollup_zones``), kept by the worker in the rows' transaction.
# ``status`` and ``currency`` are "" where the row has none (they are part of the key).
# Rows are clustered by their key on SQLite: a range of days is one sequential read.
conversion_days = Table(
    "conversion_days",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("conversions", BigInteger, nullable=False),
    Column("value_high", BigInteger, nullable=False),  # sum of (value - refunded) // 2**24
    Column("value_low", BigInteger, nullable=False),  # sum of (value - refunded) % 2**24
    sqlite_with_rowid=False,
)

session_days = Table(
    "session_days",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("bot", Boolean, primary_key=True),
    Column("clicked", Boolean, primary_key=True),  # arrived with a click ID
    Column("sessions", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# The overview's channel breakdowns ("touch rollups"): per site, touch dimension (a
# ``sessions`` column: channel, source, campaign, landing_page, device), local day and
# value ("" where unknown); conversions under the session the last-non-direct model
# credits, sessions under their own touch (bots left out). Each is also kept within every
# value of every other dimension (``filter_dimension`` = ``filter_value``; both "" for the
# whole site), so a page filtered on one channel value reads its tables from here too.
# The key leads with what a page asks for: one (filter, dimension) over a range of days
# is one range of rows.
touch_conversion_days = Table(
    "touch_conversion_days",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("filter_dimension", String(16), primary_key=True),
    Column("filter_value", Text, primary_key=True),
    Column("dimension", String(16), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("value", Text, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("conversions", BigInteger, nullable=False),
    Column("value_high", BigInteger, nullable=False),
    Column("value_low", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

touch_session_days = Table(
    "touch_session_days",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("filter_dimension", String(16), primary_key=True),
    Column("filter_value", Text, primary_key=True),
    Column("dimension", String(16), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("value", Text, primary_key=True),
    Column("sessions", BigInteger, nullable=False),
    Column("click_sessions", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# The time zone a site's rollups count days in. It follows the site's setting: whoever
# changes the zone (or the worker, on its next batch of the site) recounts the rollups
# while holding this row, so days of two zones never mix.
rollup_zones = Table(
    "rollup_zones",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("zone", String(64), nullable=False),
)

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
    # The ``cus_…`` ID of the Dub-compatible API (firsttag.customer_ids), filled by the
    # worker; customer routes look a customer up by it.
    Column("public_id", String(40)),
    Index("ix_customers_public", "site_id", "public_id"),
)

# Customers erased with ``DELETE /customers/{id}`` (see docs/privacy.md): only the derived
# public ID and the time, so the worker can anonymise events received before the erasure
# that were still queued (they must not bring the person back), without keeping who it was.
customer_erasures = Table(
    "customer_erasures",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("public_id", String(40), primary_key=True),
    Column("erased_at", String(32), nullable=False),
)


def utcnow() -> str:
    """Return the current time in the store's timestamp format."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """Format an aware datetime as the store's ISO 8601 UTC string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def connect(database_url: str, migrate: bool = True) -> Engine:
    """Create an engine for ``database_url``; with ``migrate``, bring the schema to head first.

    Every process kind calls this on start, so whichever starts first applies the
    migrations (under :func:`migration_lock`) and the others find the schema current.
    """
    engine = create_engine(database_url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
    if migrate:
        upgrade(engine)
    return engine


# -- migrations (Alembic; revisions in firsttag/migrations/versions) ----------------------

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: any fixed 64-bit number, the same in every release.
_PG_LOCK_KEY = 0x66697273747461  # "firstta"


def _alembic_config(connection: Any | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # there is always at least the initial revision
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated, perhaps made by create_all)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply the missing revisions, once, however many processes call this at the same time.

    Returns the revisions before and after. A database at a revision this release does
    not know was migrated by a newer release (a rolling deploy: workers first): it is left
    as it is, since revisions only ever add, and the old code keeps working on it.
    """
    scripts = ScriptDirectory.from_config(_alembic_config())
    with migration_lock(engine) as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        if before is not None and not _known(scripts, before):
            return before, before
        if before != scripts.get_current_head():
            alembic_command.upgrade(_alembic_config(conn), "head")
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except AlembicCommandError:  # "Can't locate revision": a newer release's
        return False


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Any]:
    """A connection inside a transaction that no other process's migration runs beside.

    PostgreSQL: a transaction-scoped advisory lock, released by the COMMIT, by a rollback,
    or by the server when a migrating process dies. SQLite: an exclusive ``flock`` on a
    file next to the database (released by the kernel when the process dies), since
    pysqlite runs DDL outside the transaction a ``BEGIN IMMEDIATE`` would hold.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.begin() as conn:
            yield conn
        return
    with open(f"{database}.migrate-lock", "a") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            fcntl.flock(lockfile, fcntl.LOCK_UN)


def schema_differences(engine: Engine) -> list[Any]:
    """What differs between the database's schema and :data:`metadata` (empty: none).

    After :func:`upgrade`, anything here is a change to the tables above that no
    revision makes: write one (docs/migrations.md).
    """
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata) if not _alembic_own(d)]


def _alembic_own(difference: Any) -> bool:
    # compare_metadata sees Alembic's own bookkeeping table as "not in the metadata".
    return (
        isinstance(difference, tuple)
        and difference[0] == "remove_table"
        and difference[1].name == "alembic_version"
    )


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
    """Insert ``rows``; rows whose ``keys`` already exist are skipped. Returns rows inserted.

    Every row has the columns of the first. A duplicate inside ``rows`` is skipped like
    a stored one: the first row of a key wins.
    """
    if not rows:
        return 0
    sql, names = _insert_ignoring_sql(conn.dialect, table, tuple(keys), tuple(rows[0]))
    # The statement is compiled once per table and the rows go straight to the driver:
    # SQLAlchemy's per-row parameter processing was a quarter of the drain's CPU, and these
    # columns (text, integers, booleans) need none. Errors are still SQLAlchemy's
    # (DBAPIError), which the drain reads to tell a database fault from a refused row.
    params: list[Any] = rows if names is None else [tuple([r[n] for n in names]) for r in rows]
    return conn.exec_driver_sql(sql, params).rowcount or 0


@cache
def _insert_ignoring_sql(
    dialect: Any, table: Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> tuple[str, tuple[str, ...] | None]:
    # The SQL in the driver's parameter style, and for a positional style (SQLite's "?")
    # the row keys in parameter order; None for a named style (psycopg's "%(name)s"),
    # whose driver takes the row dicts as they are.
    insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
    stmt = insert(table).on_conflict_do_nothing(index_elements=list(keys))
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
    positions = compiled.positiontup
    return compiled.string, tuple(positions) if positions is not None else None


def upsert_customers(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Create customers; an existing one keeps its data but gains a click it lacked."""
    if not rows:
        return
    stmt = dialect_insert(conn, customers)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "external_id"],
        set_={
            "click_id": func.coalesce(customers.c.click_id, stmt.excluded.click_id),
            "public_id": func.coalesce(customers.c.public_id, stmt.excluded.public_id),
        },
    )
    conn.execute(stmt, rows)


def erase_customer(conn: Any, site_id: str, external_id: str, erased_at: str) -> None:
    """Erase a customer: delete its row, anonymise its conversions, remember when.

    Runs in the worker (an :class:`~firsttag.wire.Erasure` event), in the transaction of
    its batch, after every event queued before it. Repeating it is harmless.
    """
    public_id = public_customer_id(site_id, external_id)
    stmt = dialect_insert(conn, customer_erasures).values(
        site_id=site_id, public_id=public_id, erased_at=erased_at
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["site_id", "public_id"],
            set_={"erased_at": stmt.excluded.erased_at},
            where=stmt.excluded.erased_at > customer_erasures.c.erased_at,
        )
    )
    conn.execute(
        customers.delete().where(
            customers.c.site_id == site_id, customers.c.external_id == external_id
        )
    )
    c = conversions
    owned = conn.execute(
        select(c.c.id, c.c.dedup_key).where(c.c.site_id == site_id, c.c.customer_id == external_id)
    ).mappings()
    for row in list(owned):
        erased = erased_conversion_fields(site_id, row)
        # The person came back after an earlier erasure and sent the same event again: its
        # erased key is taken by the first one. Chain the digest until it is free (the
        # same chain every time, so a second erasure stays harmless).
        while conn.execute(
            select(c.c.id).where(c.c.site_id == site_id, c.c.dedup_key == erased["dedup_key"])
        ).first():
            erased["dedup_key"] = erased_dedup_key(site_id, erased["dedup_key"])
        conn.execute(c.update().where(c.c.id == row["id"]).values(**erased))
        # An order's history follows its renamed key (it holds no personal data).
        o = order_states
        conn.execute(
            o.update()
            .where(o.c.site_id == site_id, o.c.dedup_key == row["dedup_key"])
            .values(dedup_key=erased["dedup_key"])
        )


def erasure_times(conn: Any, site_id: str, public_ids: Iterable[str]) -> dict[str, str]:
    """When each of ``public_ids`` of ``site_id`` was erased (absent: never erased)."""
    wanted = set(public_ids)
    if not wanted:
        return {}
    t = customer_erasures
    return dict(
        conn.execute(
            select(t.c.public_id, t.c.erased_at).where(
                t.c.site_id == site_id, t.c.public_id.in_(wanted)
            )
        ).all()
    )


def erased_dedup_key(site_id: str, dedup_key: str) -> str:
    """The idempotency key of an erased customer's conversion.

    Lead keys hold the external ID (``lead:["<externalId>","Sign Up"]``), so erasure
    replaces every key of the person with a digest: still unique and the same on a replay
    (the store's unique key keeps absorbing re-deliveries), but no longer the person's ID.
    """
    digest = hashlib.sha256(f"{site_id}\0{dedup_key}".encode()).hexdigest()
    return "erased:" + digest[:40]


def erased_conversion_fields(site_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The values that replace an erased customer's data in one ``conversions`` row.

    The external ID, the caller's metadata (it may hold anything about the person) and
    the fingerprint (it repeats the external ID) go; the amount, currency, kind, time, the
    anonymous browser IDs and the attribution stay, so reports keep their totals.
    """
    return {
        "dedup_key": erased_dedup_key(site_id, row["dedup_key"]),
        "customer_id": None,
        "metadata": None,
        "fingerprint": None,
    }


def upsert_order(conn: Any, row: dict[str, Any]) -> None:
    """Store an order, or move it to a newer state; an older state never replaces a newer."""
    stmt = dialect_insert(conn, conversions).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "dedup_key"],
        set_={
            "status": stmt.excluded.status,
            # An order keeps its first value, so a refund is capped at it: an update that
            # reports a bigger total and refunds it all must not make revenue negative.
            "refunded": case(
                (stmt.excluded.refunded > conversions.c.value, conversions.c.value),
                else_=stmt.excluded.refunded,
            ),
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
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "session_id"],
        set_={"verified_at": stmt.excluded.verified_at},
        where=stmt.excluded.verified_at < table.c.verified_at,
    )
    conn.execute(stmt, rows)


def dialect_insert(conn: Any, table: Table) -> Any:
    """An INSERT for ``table`` in ``conn``'s dialect, which offers ``ON CONFLICT``."""
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


def customer_row(engine: Engine, site_id: str, external_id: str) -> dict[str, Any] | None:
    """The stored customer (name, email, avatar, click_id), or None when not stored."""
    t = customers
    with engine.connect() as conn:
        found = conn.execute(
            select(t.c.name, t.c.email, t.c.avatar, t.c.click_id).where(
                t.c.site_id == site_id, t.c.external_id == external_id
            )
        ).first()
    return dict(found._mapping) if found is not None else None
