"""Rollups: sessions and conversions pre-counted per site and quarter hour, for the dashboard.

Why quarter hours (UTC): the dashboard shows days in each site's own time zone, and the
zone can change. UTC days do not add up to local days, and rolling up by local day would
have to be redone whenever a site changes its zone. Every time zone in use today is a
whole number of quarter hours from UTC (India +5:30, Nepal +5:45, Chatham +12:45), so
local midnight always falls on a quarter-hour boundary: any local day is a whole set of
buckets, for any zone, with no rebuild. A 30-day overview reads 30 × 96 buckets.

How they stay exact: the worker calls :func:`stored_before` and then :func:`refresh` in
the same transaction as the rows (:func:`firsttag.events.rows.write`). Rows the batch
added (sessions and conversions that were not stored before it) are added to their
buckets: an ``INSERT … SELECT … GROUP BY`` of their own counts, upserted onto the bucket,
so the cost follows the batch, not the size of the bucket (recounting whole buckets made
the drain slower as a busy quarter hour filled). A replayed event was stored before, so it
adds nothing. A conversion that existed before — an order update, a refund, a stale order
version the store refused — has its buckets recounted from the rows (delete, then
``INSERT … SELECT``): for an order update the bucket is the stored row's ``occurred_at``
(the update cannot move it), read back after the write. The drain lease
(:mod:`firsttag.events.buffer`) lets one batch be written at a time, so nothing else
writes the rows between the look before and the count after.

:func:`rebuild` recounts a whole site (or every site): for a database that existed before
rollups, and for the benchmark's bulk load. :func:`recount` returns what the tables should
hold, for tests and checks.

What a bucket keeps: conversions per (kind, source, name, status, currency) with their
count and net value (value − refunded, split in two sums as in
:mod:`firsttag.analytics.queries` so no 64-bit sum can overflow); sessions per (bot,
clicked). The site's settings (counting statuses, browser revenue) apply when reading, so
changing them needs no rebuild.

Touch rollups (the overview's channel breakdowns) keep the same numbers per touch
dimension and value (:data:`TOUCH_DIMENSIONS`, "" where unknown): a conversion under the
session the last-non-direct model credits (``last_non_direct_session_id``, frozen when
it was stored; the credited session was stored before it and sessions never change), a
session under its own touch, bots left out. They are recounted with the same buckets,
in the same transaction, so they are exact for the same reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)

from firsttag import store
from firsttag.wire import Conversion, Event, Session

#: Net values are summed as ``net // SPLIT`` and ``net % SPLIT`` (see queries._SPLIT).
SPLIT = 2**24

#: A bucket is named by its start, ``YYYY-MM-DDTHH:MM`` (UTC), minutes 00, 15, 30 or 45.
#: As text it sorts with the store's timestamps: ``"…T12:15" <= "…T12:15:00.000000Z"``.
BUCKET_MINUTES = 15
_BUCKET_CHUNK = 50  # ranges per recount statement
_KEY_CHUNK = 500  # dedup keys per lookup

conversion_rollups = store.conversion_rollups
session_rollups = store.session_rollups
touch_conversion_rollups = store.touch_conversion_rollups
touch_session_rollups = store.touch_session_rollups

#: The ``sessions`` columns the touch rollups split by, as named in their ``dimension``.
TOUCH_DIMENSIONS = ("channel", "source", "campaign", "landing_page", "device")
#: The conversions column naming the session a conversion is credited to (last non-direct).
TOUCH_MODEL_COLUMN = "last_non_direct_session_id"


def bucket_of(timestamp: str) -> str:
    """The bucket holding a store timestamp (``2026-04-10T12:34:56.000000Z`` → ``…T12:30``)."""
    minute = int(timestamp[14:16]) // BUCKET_MINUTES * BUCKET_MINUTES
    return f"{timestamp[:14]}{minute:02d}"


def bucket_at(moment: datetime) -> str:
    """The bucket name of an aware instant that lies on a bucket boundary (or within one)."""
    return bucket_of(store.format_time(moment))


def _next(bucket: str) -> str:
    moment = datetime.strptime(bucket, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    return (moment + timedelta(minutes=BUCKET_MINUTES)).strftime("%Y-%m-%dT%H:%M")


def _bucket_sql(column: Any) -> Any:
    # substr(ts, 1, 14) is "YYYY-MM-DDTHH:"; the minutes are floored to a quarter hour.
    minutes = func.substr(column, 15, 2)
    quarter = case(
        (minutes < "15", "00"), (minutes < "30", "15"), (minutes < "45", "30"), else_="45"
    )
    return func.substr(column, 1, 14).concat(quarter)


def _ranges(buckets: Iterable[str]) -> list[tuple[str, str]]:
    """Sorted buckets as half-open [start, end) ranges, neighbours merged."""
    out: list[tuple[str, str]] = []
    for bucket in sorted(set(buckets)):
        end = _next(bucket)
        if out and out[-1][1] == bucket:
            out[-1] = (out[-1][0], end)
        else:
            out.append((bucket, end))
    return out


def _conversion_select(site_id: str, where: Any) -> Any:
    c = store.conversions
    bucket = _bucket_sql(c.c.occurred_at)
    net = c.c.value - c.c.refunded
    status = func.coalesce(c.c.status, "")
    currency = func.coalesce(c.c.currency, "")
    return (
        select(
            c.c.site_id,
            bucket.label("bucket"),
            c.c.kind,
            c.c.source,
            c.c.name,
            status.label("status"),
            currency.label("currency"),
            func.count().label("conversions"),
            func.coalesce(func.sum(net // SPLIT), 0).label("value_high"),
            func.coalesce(func.sum(net % SPLIT), 0).label("value_low"),
        )
        .where(c.c.site_id == site_id, where)
        .group_by(c.c.site_id, bucket, c.c.kind, c.c.source, c.c.name, status, currency)
    )


def _session_select(site_id: str, where: Any) -> Any:
    s = store.sessions
    bucket = _bucket_sql(s.c.created_at)
    clicked = s.c.click_id.is_not(None)
    return (
        select(
            s.c.site_id,
            bucket.label("bucket"),
            s.c.bot,
            clicked.label("clicked"),
            func.count().label("sessions"),
        )
        .where(s.c.site_id == site_id, where)
        .group_by(s.c.site_id, bucket, s.c.bot, clicked)
    )


def _dimension(name: str) -> Any:
    # A typed constant: PostgreSQL cannot infer an untyped parameter in INSERT … SELECT.
    return cast(literal(name), String(16)).label("dimension")


def _touch_conversion_select(site_id: str, where: Any) -> Any:
    c = store.conversions
    credited = store.sessions.alias("credited")
    joined = c.outerjoin(
        credited,
        and_(
            credited.c.site_id == c.c.site_id,
            credited.c.session_id == c.c[TOUCH_MODEL_COLUMN],
        ),
    )
    bucket = _bucket_sql(c.c.occurred_at)
    net = c.c.value - c.c.refunded
    status = func.coalesce(c.c.status, "")
    currency = func.coalesce(c.c.currency, "")
    parts = []
    for name in TOUCH_DIMENSIONS:
        value = func.coalesce(credited.c[name], "")
        parts.append(
            select(
                c.c.site_id,
                _dimension(name),
                value.label("value"),
                bucket.label("bucket"),
                c.c.kind,
                c.c.source,
                c.c.name,
                status.label("status"),
                currency.label("currency"),
                func.count().label("conversions"),
                func.coalesce(func.sum(net // SPLIT), 0).label("value_high"),
                func.coalesce(func.sum(net % SPLIT), 0).label("value_low"),
            )
            .select_from(joined)
            .where(c.c.site_id == site_id, where)
            .group_by(c.c.site_id, value, bucket, c.c.kind, c.c.source, c.c.name, status, currency)
        )
    return union_all(*parts)


def _touch_session_select(site_id: str, where: Any) -> Any:
    s = store.sessions
    bucket = _bucket_sql(s.c.created_at)
    clicked = s.c.click_id.is_not(None)
    parts = []
    for name in TOUCH_DIMENSIONS:
        value = func.coalesce(s.c[name], "")
        parts.append(
            select(
                s.c.site_id,
                _dimension(name),
                value.label("value"),
                bucket.label("bucket"),
                clicked.label("clicked"),
                func.count().label("sessions"),
            )
            .where(s.c.site_id == site_id, s.c.bot.is_(False), where)
            .group_by(s.c.site_id, value, bucket, clicked)
        )
    return union_all(*parts)


_CONVERSION_COLUMNS = [
    "site_id", "bucket", "kind", "source", "name", "status", "currency",
    "conversions", "value_high", "value_low",
]  # fmt: skip
_SESSION_COLUMNS = ["site_id", "bucket", "bot", "clicked", "sessions"]
_TOUCH_CONVERSION_COLUMNS = [
    "site_id", "dimension", "value", "bucket", "kind", "source", "name", "status", "currency",
    "conversions", "value_high", "value_low",
]  # fmt: skip
_TOUCH_SESSION_COLUMNS = ["site_id", "dimension", "value", "bucket", "clicked", "sessions"]

#: Per kind of row: (rollup table, its columns, the select that counts it from the rows).
_PLANS = {
    "conversions": [
        (conversion_rollups, _CONVERSION_COLUMNS, _conversion_select),
        (touch_conversion_rollups, _TOUCH_CONVERSION_COLUMNS, _touch_conversion_select),
    ],
    "sessions": [
        (session_rollups, _SESSION_COLUMNS, _session_select),
        (touch_session_rollups, _TOUCH_SESSION_COLUMNS, _touch_session_select),
    ],
}


def _delete_buckets(conn: Any, table: Any, site_id: str, names: list[str]) -> None:
    where = [table.c.site_id == site_id, table.c.bucket.in_(names)]
    if "dimension" in table.c:
        # Each dimension is its own range of the (site, dimension, bucket) index.
        for name in TOUCH_DIMENSIONS:
            conn.execute(delete(table).where(*where, table.c.dimension == name))
        return
    conn.execute(delete(table).where(*where))


def _recount_buckets(conn: Any, site_id: str, buckets: set[str], sessions: bool) -> None:
    column = store.sessions.c.created_at if sessions else store.conversions.c.occurred_at
    ranges = _ranges(buckets)
    for i in range(0, len(ranges), _BUCKET_CHUNK):
        chunk = ranges[i : i + _BUCKET_CHUNK]
        names = [b for b in buckets if any(lo <= b < hi for lo, hi in chunk)]
        where = or_(*(and_(column >= lo, column < hi) for lo, hi in chunk))
        for table, columns, make in _PLANS["sessions" if sessions else "conversions"]:
            _delete_buckets(conn, table, site_id, names)
            conn.execute(insert(table).from_select(columns, make(site_id, where)))


@dataclass(frozen=True)
class Stored:
    """Which of a batch's sessions and conversions were stored before it (per site)."""

    sessions: dict[str, set[str]]
    conversions: dict[str, set[str]]


def _batch_keys(events: list[Event]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    sessions: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event.body, Session):
            sessions.setdefault(event.site, set()).add(event.body.session_id)
        elif isinstance(event.body, Conversion):
            # A conversion of a customer erased before it arrived is stored under its
            # erased key (store.erased_conversion_fields): look for both.
            keys.setdefault(event.site, set()).update(
                (event.body.dedup_key, store.erased_dedup_key(event.site, event.body.dedup_key))
            )
    return sessions, keys


def _present(conn: Any, table: Any, column: str, site_id: str, values: set[str]) -> set[str]:
    ordered = sorted(values)
    found: set[str] = set()
    for i in range(0, len(ordered), _KEY_CHUNK):
        chunk = ordered[i : i + _KEY_CHUNK]
        found.update(
            conn.execute(
                select(table.c[column]).where(
                    table.c.site_id == site_id, table.c[column].in_(chunk)
                )
            ).scalars()
        )
    return found


def stored_before(conn: Any, events: list[Event]) -> Stored:
    """What of ``events`` is already stored; call on the rows' transaction before writing."""
    sessions, keys = _batch_keys(events)
    return Stored(
        {
            site: _present(conn, store.sessions, "session_id", site, ids)
            for site, ids in sessions.items()
        },
        {site: _present(conn, store.conversions, "dedup_key", site, k) for site, k in keys.items()},
    )


def refresh(conn: Any, events: list[Event], before: Stored) -> None:
    """Bring the buckets ``events`` changed up to date, on ``conn`` (the rows' transaction).

    Call after the rows of ``events`` are written, with what :func:`stored_before` found.
    Rows this batch added are added to their buckets (an upsert of their own counts: the
    cost follows the batch, not the bucket's size). Conversions that existed before (an
    order update, a refund) have their buckets recounted from the rows, which also makes
    those buckets exact whatever the deltas did. A replayed event was stored before, so it
    adds nothing.
    """
    sessions, keys = _batch_keys(events)
    s, c = store.sessions, store.conversions
    for site_id, ids in sessions.items():
        new = sorted(ids - before.sessions.get(site_id, set()))
        for i in range(0, len(new), _KEY_CHUNK):
            _add(conn, "sessions", site_id, s.c.session_id.in_(new[i : i + _KEY_CHUNK]))
    for site_id, site_keys in keys.items():
        known = before.conversions.get(site_id, set())
        new = sorted(site_keys - known)
        for i in range(0, len(new), _KEY_CHUNK):
            _add(conn, "conversions", site_id, c.c.dedup_key.in_(new[i : i + _KEY_CHUNK]))
        updated = sorted(site_keys & known)
        buckets: set[str] = set()
        for i in range(0, len(updated), _KEY_CHUNK):
            # The stored time, not the event's: an order update keeps its first time.
            buckets.update(
                bucket_of(t)
                for t in conn.execute(
                    select(c.c.occurred_at).where(
                        c.c.site_id == site_id, c.c.dedup_key.in_(updated[i : i + _KEY_CHUNK])
                    )
                ).scalars()
            )
        if buckets:
            _recount_buckets(conn, site_id, buckets, sessions=False)


def _add(conn: Any, kind: str, site_id: str, where: Any) -> None:
    """Add the counts of the rows matching ``where`` to their buckets (insert or increase)."""
    for table, columns, make in _PLANS[kind]:
        counts = [n for n in columns if n in ("sessions", "conversions", "value_high", "value_low")]
        stmt = store.dialect_insert(conn, table).from_select(columns, make(site_id, where))
        stmt = stmt.on_conflict_do_update(
            index_elements=[col.name for col in table.primary_key.columns],
            set_={n: table.c[n] + stmt.excluded[n] for n in counts},
        )
        conn.execute(stmt)


def _site_ids(conn: Any, site_id: str | None) -> list[str]:
    if site_id is not None:
        return [site_id]
    return list(conn.execute(select(store.sites.c.id).order_by(store.sites.c.id)).scalars())


def rebuild(conn: Any, site_id: str | None = None, tables: Iterable[str] | None = None) -> None:
    """Recount every bucket of ``site_id`` (or of every site) from the stored rows.

    ``tables`` names the rollup tables to recount (default: all); a migration names the
    ones it creates, as later tables do not exist yet when it runs.
    """
    wanted = set(tables) if tables is not None else None
    for sid in _site_ids(conn, site_id):
        for plans in _PLANS.values():
            for table, columns, make in plans:
                if wanted is not None and table.name not in wanted:
                    continue
                conn.execute(delete(table).where(table.c.site_id == sid))
                conn.execute(insert(table).from_select(columns, make(sid, literal(True))))


def recount(conn: Any, site_id: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the rollups of ``site_id`` should hold, counted now from the rows (for checks).

    Keyed by table name (``conversion_rollups``, ``touch_session_rollups``, …).
    """
    return {
        table.name: {_normal(r) for r in conn.execute(make(site_id, literal(True)))}
        for plans in _PLANS.values()
        for table, _, make in plans
    }


def stored(conn: Any, site_id: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the rollups of ``site_id`` hold now (for checks against :func:`recount`)."""
    out = {}
    for plans in _PLANS.values():
        for table, columns, _ in plans:
            query = select(*(table.c[k] for k in columns)).where(table.c.site_id == site_id)
            out[table.name] = {_normal(r) for r in conn.execute(query)}
    return out


def _normal(row: Any) -> tuple[Any, ...]:
    # PostgreSQL sums as numeric; booleans may come back as 0/1 on SQLite.
    return tuple(int(v) if not isinstance(v, str) else v for v in row)


__all__ = [
    "BUCKET_MINUTES",
    "TOUCH_DIMENSIONS",
    "TOUCH_MODEL_COLUMN",
    "bucket_at",
    "bucket_of",
    "rebuild",
    "recount",
    "refresh",
    "stored",
]
