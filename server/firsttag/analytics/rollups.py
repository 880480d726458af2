"""Rollups: sessions and conversions pre-counted per site and local day, for the dashboard.

Why local days: the overview reads whole days of the site's time zone, so a 30-day page
reads 30 rows per key, whatever the traffic. Quarter hours in UTC (the first design) fit
every zone without a rebuild, but a many-valued dimension (a thousand landing pages) has
nearly one row per visit per quarter hour, and the overview of a big site read millions.

Which zone: the one named in ``rollup_zones`` for the site, kept equal to the site's
setting by :func:`sync_zone`. Whoever changes a site's zone calls it (the settings page,
``firsttag sites update``), and the worker calls it for every site of every batch before
counting that batch, so a zone change nobody followed is caught on the next event. It
recounts the site's rollups in the new zone while holding the site's ``rollup_zones`` row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time), so a batch
counted in the old zone and a recount in the new one never interleave. Readers check
:func:`zone_of` and count from the rows while the two differ.

How a day's local date is computed in SQL: from each site zone's UTC offsets since 2000
(the earliest time the store accepts), a ``CASE`` on the stored UTC time picks the offset
in force, newest first, and shifts the time by it (:func:`local_day_sql`). Offsets and
their changes come from :mod:`zoneinfo`, so a DST day of 23 or 25 hours is exact.

How they stay exact: the worker calls :func:`stored_before` and then :func:`refresh` in
the same transaction as the rows (:func:`firsttag.events.rows.write`). Rows the batch
added (sessions and conversions that were not stored before it) are added to their days:
an ``INSERT … SELECT … GROUP BY`` of their own counts, upserted onto the day, so the cost
follows the batch, not the day. A replayed event was stored before, so it adds nothing. A
conversion that existed before (an order update, a refund, a stale order version the
store refused) has its days recounted from the rows (delete, then ``INSERT … SELECT``):
the day of the stored row's ``occurred_at`` (an update cannot move it), read back after
the write. The drain lease (:mod:`firsttag.events.buffer`) lets one batch be written at a
time, so nothing else writes the rows between the look before and the count after.

What a day keeps: conversions per (kind, source, name, status, currency) with their count
and net value (value − refunded, split in two sums as in :mod:`firsttag.analytics.queries`
so no 64-bit sum can overflow); sessions per (bot, clicked). The site's counting settings
(counting statuses, browser revenue) apply when reading, so changing them needs no recount.

Touch rollups (the overview's channel breakdowns) keep the same numbers per touch
dimension (:data:`TOUCH_DIMENSIONS`), day and value ("" where unknown): a conversion under
the session the last-non-direct model credits (``last_non_direct_session_id``, frozen when
it was stored; the credited session was stored before it and sessions never change), a
session under its own touch (bots left out), with how many arrived with a click ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    TIMESTAMP,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)

from firsttag import sites, store
from firsttag.bounds import MIN_TIME
from firsttag.wire import Conversion, Event, Session

#: Net values are summed as ``net // SPLIT`` and ``net % SPLIT`` (see queries._SPLIT).
SPLIT = 2**24

_KEY_CHUNK = 500  # dedup keys per lookup
_DAY_CHUNK = 50  # day ranges per recount statement

conversion_days = store.conversion_days
session_days = store.session_days
touch_conversion_days = store.touch_conversion_days
touch_session_days = store.touch_session_days

#: The ``sessions`` columns the touch rollups split by, as named in their ``dimension``.
TOUCH_DIMENSIONS = ("channel", "source", "campaign", "landing_page", "device")
#: The conversions column naming the session a conversion is credited to (last non-direct).
TOUCH_MODEL_COLUMN = "last_non_direct_session_id"


@lru_cache(maxsize=256)
def zone_offsets(zone: str, until_year: int) -> tuple[tuple[str, int], ...]:
    """The UTC offsets (minutes) of ``zone`` from 2000 to the end of ``until_year``.

    ``((start, offset), …)`` in time order: each offset is in force from its ``start`` (a
    store timestamp; the first one's is ``""``, the beginning) until the next one's.
    """
    tz = ZoneInfo(zone)

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(tz).utcoffset() or timedelta(0)
        return int(delta.total_seconds()) // 60

    moment = MIN_TIME - timedelta(days=1)
    end = datetime(until_year + 1, 1, 1, tzinfo=UTC)
    out = [("", offset(moment))]
    while moment < end:
        after = moment + timedelta(days=1)
        if offset(after) != out[-1][1]:
            # The change is in (lo, hi]: find its first second (whole seconds, as tzdata).
            lo, hi = int(moment.timestamp()), int(after.timestamp())
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(datetime.fromtimestamp(mid, UTC)) != out[-1][1]:
                    hi = mid
                else:
                    lo = mid
            change = datetime.fromtimestamp(hi, UTC)
            out.append((store.format_time(change), offset(change)))
        moment = after
    return tuple(out)


def local_day(timestamp: str, zone: str) -> str:
    """The local date (``YYYY-MM-DD``) in ``zone`` of a store timestamp."""
    moment = datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


def local_day_sql(dialect: str, column: Any, zone: str) -> Any:
    """SQL for the local date (``YYYY-MM-DD``) in ``zone`` of a store timestamp column."""

    def shifted(minutes: int) -> Any:
        # Our own integers only, as literals: the expression appears in SELECT and GROUP BY
        # and PostgreSQL matches the two only if they are the same text.
        if dialect == "sqlite":
            return func.date(func.substr(column, 1, 19), literal_column(f"'{minutes:+d} minutes'"))
        moment = cast(func.substr(column, 1, 19), TIMESTAMP)
        return func.to_char(
            moment + literal_column(f"INTERVAL '{minutes:d} minutes'"),
            literal_column("'YYYY-MM-DD'"),
        )

    offsets = zone_offsets(zone, datetime.now(UTC).year + 1)
    if len(offsets) == 1:
        return shifted(offsets[0][1])
    # Newest first: a row of this year matches the first branch.
    whens = [(column >= literal_column(f"'{start}'"), shifted(m)) for start, m in offsets[:0:-1]]
    return case(*whens, else_=shifted(offsets[0][1]))


def day_bounds(day: str, zone: str) -> tuple[str, str]:
    """[local midnight of ``day``, the next local midnight) as store timestamps."""
    tz = ZoneInfo(zone)
    first = date.fromisoformat(day)
    start = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=1), time(0), tz).astimezone(UTC)
    return store.format_time(start), store.format_time(end)


def _dimension(name: str) -> Any:
    # A typed constant: PostgreSQL cannot infer an untyped parameter in INSERT … SELECT.
    return cast(literal(name), String(16)).label("dimension")


def _net() -> Any:
    c = store.conversions
    return c.c.value - c.c.refunded


def _conversion_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    c = store.conversions
    day = local_day_sql(dialect, c.c.occurred_at, zone)
    status = func.coalesce(c.c.status, "")
    currency = func.coalesce(c.c.currency, "")
    return (
        select(
            c.c.site_id,
            day.label("day"),
            c.c.kind,
            c.c.source,
            c.c.name,
            status.label("status"),
            currency.label("currency"),
            func.count().label("conversions"),
            func.coalesce(func.sum(_net() // SPLIT), 0).label("value_high"),
            func.coalesce(func.sum(_net() % SPLIT), 0).label("value_low"),
        )
        .where(c.c.site_id == site_id, where)
        .group_by(c.c.site_id, day, c.c.kind, c.c.source, c.c.name, status, currency)
    )


def _session_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    s = store.sessions
    day = local_day_sql(dialect, s.c.created_at, zone)
    clicked = s.c.click_id.is_not(None)
    return (
        select(
            s.c.site_id,
            day.label("day"),
            s.c.bot,
            clicked.label("clicked"),
            func.count().label("sessions"),
        )
        .where(s.c.site_id == site_id, where)
        .group_by(s.c.site_id, day, s.c.bot, clicked)
    )


def _touch_conversion_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    c = store.conversions
    credited = store.sessions.alias("credited")
    joined = c.outerjoin(
        credited,
        and_(
            credited.c.site_id == c.c.site_id,
            credited.c.session_id == c.c[TOUCH_MODEL_COLUMN],
        ),
    )
    day = local_day_sql(dialect, c.c.occurred_at, zone)
    status = func.coalesce(c.c.status, "")
    currency = func.coalesce(c.c.currency, "")
    parts = []
    for name in TOUCH_DIMENSIONS:
        value = func.coalesce(credited.c[name], "")
        parts.append(
            select(
                c.c.site_id,
                _dimension(name),
                day.label("day"),
                value.label("value"),
                c.c.kind,
                c.c.source,
                c.c.name,
                status.label("status"),
                currency.label("currency"),
                func.count().label("conversions"),
                func.coalesce(func.sum(_net() // SPLIT), 0).label("value_high"),
                func.coalesce(func.sum(_net() % SPLIT), 0).label("value_low"),
            )
            .select_from(joined)
            .where(c.c.site_id == site_id, where)
            .group_by(c.c.site_id, day, value, c.c.kind, c.c.source, c.c.name, status, currency)
        )
    return union_all(*parts)


def _touch_session_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    s = store.sessions
    day = local_day_sql(dialect, s.c.created_at, zone)
    parts = []
    for name in TOUCH_DIMENSIONS:
        value = func.coalesce(s.c[name], "")
        parts.append(
            select(
                s.c.site_id,
                _dimension(name),
                day.label("day"),
                value.label("value"),
                func.count().label("sessions"),
                func.sum(case((s.c.click_id.is_not(None), 1), else_=0)).label("click_sessions"),
            )
            .where(s.c.site_id == site_id, s.c.bot.is_(False), where)
            .group_by(s.c.site_id, day, value)
        )
    return union_all(*parts)


@dataclass(frozen=True)
class _Plan:
    """One rollup table: its key and measure columns, and the select counting it."""

    table: Any
    measures: tuple[str, ...]
    make: Any

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.primary_key.columns] + list(self.measures)


_MONEY = ("value_high", "value_low")
#: Per kind of row: the rollup tables it counts in.
_PLANS = {
    "conversions": (
        _Plan(conversion_days, ("conversions", *_MONEY), _conversion_select),
        _Plan(touch_conversion_days, ("conversions", *_MONEY), _touch_conversion_select),
    ),
    "sessions": (
        _Plan(session_days, ("sessions",), _session_select),
        _Plan(touch_session_days, ("sessions", "click_sessions"), _touch_session_select),
    ),
}
_ALL_PLANS = _PLANS["conversions"] + _PLANS["sessions"]


def _add(conn: Any, kind: str, site_id: str, zone: str, where: Any) -> None:
    """Add the counts of the rows matching ``where`` to their days (insert or increase)."""
    for plan in _PLANS[kind]:
        table = plan.table
        select_ = plan.make(conn.dialect.name, zone, site_id, where)
        stmt = store.dialect_insert(conn, table).from_select(plan.columns, select_)
        stmt = stmt.on_conflict_do_update(
            index_elements=[col.name for col in table.primary_key.columns],
            set_={n: table.c[n] + stmt.excluded[n] for n in plan.measures},
        )
        conn.execute(stmt)


def _recount_days(conn: Any, site_id: str, zone: str, days: set[str]) -> None:
    """Recount the conversion rollups of ``days`` (local dates) from the rows."""
    column = store.conversions.c.occurred_at
    ordered = sorted(days)
    for i in range(0, len(ordered), _DAY_CHUNK):
        chunk = ordered[i : i + _DAY_CHUNK]
        where = or_(
            *(and_(column >= lo, column < hi) for lo, hi in (day_bounds(d, zone) for d in chunk))
        )
        for plan in _PLANS["conversions"]:
            t = plan.table
            if "dimension" in t.c:  # each dimension is its own range of the key
                for name in TOUCH_DIMENSIONS:
                    conn.execute(
                        delete(t).where(
                            t.c.site_id == site_id, t.c.dimension == name, t.c.day.in_(chunk)
                        )  # fmt: skip
                    )
            else:
                conn.execute(delete(t).where(t.c.site_id == site_id, t.c.day.in_(chunk)))
            select_ = plan.make(conn.dialect.name, zone, site_id, where)
            conn.execute(insert(t).from_select(plan.columns, select_))


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
    """Bring the days ``events`` changed up to date, on ``conn`` (the rows' transaction).

    Call after the rows of ``events`` are written, with what :func:`stored_before` found.
    Each site's rollups first follow its zone (:func:`sync_zone`; a recount there counts
    this batch too). Rows this batch added are added to their days (an upsert of their own
    counts: the cost follows the batch, not the day). Conversions that existed before (an
    order update, a refund) have their days recounted from the rows, which also makes
    those days exact whatever the deltas did. A replayed event was stored before, so it
    adds nothing.
    """
    sessions, keys = _batch_keys(events)
    s, c = store.sessions, store.conversions
    for site_id in sorted(set(sessions) | set(keys)):  # one lock order for every writer
        zone, recounted = sync_zone(conn, site_id)
        if recounted:
            continue
        new = sorted(sessions.get(site_id, set()) - before.sessions.get(site_id, set()))
        for i in range(0, len(new), _KEY_CHUNK):
            _add(conn, "sessions", site_id, zone, s.c.session_id.in_(new[i : i + _KEY_CHUNK]))
        site_keys = keys.get(site_id, set())
        known = before.conversions.get(site_id, set())
        new = sorted(site_keys - known)
        for i in range(0, len(new), _KEY_CHUNK):
            _add(conn, "conversions", site_id, zone, c.c.dedup_key.in_(new[i : i + _KEY_CHUNK]))
        updated = sorted(site_keys & known)
        days: set[str] = set()
        for i in range(0, len(updated), _KEY_CHUNK):
            # The stored time, not the event's: an order update keeps its first time.
            days.update(
                local_day(t, zone)
                for t in conn.execute(
                    select(c.c.occurred_at).where(
                        c.c.site_id == site_id, c.c.dedup_key.in_(updated[i : i + _KEY_CHUNK])
                    )
                ).scalars()
            )
        if days:
            _recount_days(conn, site_id, zone, days)


def zone_of(conn: Any, site_id: str) -> str | None:
    """The zone the rollups of ``site_id`` count days in (None before any were counted)."""
    t = store.rollup_zones
    return conn.execute(select(t.c.zone).where(t.c.site_id == site_id)).scalar()


def sync_zone(conn: Any, site_id: str) -> tuple[str, bool]:
    """Make the rollups of ``site_id`` count days in the site's zone; (zone, recounted?).

    Holds the site's ``rollup_zones`` row until ``conn``'s transaction ends, so a batch
    and a recount of the same site take turns. A site whose rollups are in another zone
    (or were never counted) is recounted from its rows.
    """
    t = store.rollup_zones
    # A write first: it takes SQLite's write lock before anything is read, and gives
    # PostgreSQL a row to lock.
    conn.execute(
        store.dialect_insert(conn, t)
        .values(site_id=site_id, zone="")
        .on_conflict_do_nothing(index_elements=["site_id"])
    )
    held = conn.execute(select(t.c.zone).where(t.c.site_id == site_id).with_for_update())
    zone = sites.site_settings(conn, site_id).time_zone
    if held.scalar_one() == zone:
        return zone, False
    _recount_site(conn, site_id, zone, _ALL_PLANS)
    conn.execute(update(t).where(t.c.site_id == site_id).values(zone=zone))
    return zone, True


def _recount_site(conn: Any, site_id: str, zone: str, plans: Iterable[_Plan]) -> None:
    for plan in plans:
        conn.execute(delete(plan.table).where(plan.table.c.site_id == site_id))
        select_ = plan.make(conn.dialect.name, zone, site_id, literal(True))
        conn.execute(insert(plan.table).from_select(plan.columns, select_))


def _site_ids(conn: Any, site_id: str | None) -> list[str]:
    if site_id is not None:
        return [site_id]
    return list(conn.execute(select(store.sites.c.id).order_by(store.sites.c.id)).scalars())


def rebuild(conn: Any, site_id: str | None = None, tables: Iterable[str] | None = None) -> None:
    """Recount the rollups of ``site_id`` (or of every site) from the stored rows.

    In the site's zone, which ``rollup_zones`` then names. ``tables`` names the rollup
    tables to recount (default: all); a name that is not one of today's tables (an old
    revision's) is ignored.
    """
    wanted = set(tables) if tables is not None else None
    plans = [p for p in _ALL_PLANS if wanted is None or p.table.name in wanted]
    if not plans:
        return
    for sid in _site_ids(conn, site_id):
        zone, recounted = sync_zone(conn, sid)  # recounts everything if the zone moved
        if not recounted:
            _recount_site(conn, sid, zone, plans)


def recount(conn: Any, site_id: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the rollups of ``site_id`` should hold, counted now from the rows (for checks).

    In the zone the rollups use; keyed by table name (``conversion_days``, …).
    """
    zone = zone_of(conn, site_id) or sites.site_settings(conn, site_id).time_zone
    return {
        plan.table.name: {
            _normal(r)
            for r in conn.execute(plan.make(conn.dialect.name, zone, site_id, literal(True)))
        }
        for plan in _ALL_PLANS
    }


def stored(conn: Any, site_id: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the rollups of ``site_id`` hold now (for checks against :func:`recount`)."""
    out = {}
    for plan in _ALL_PLANS:
        t = plan.table
        query = select(*(t.c[k] for k in plan.columns)).where(t.c.site_id == site_id)
        out[t.name] = {_normal(r) for r in conn.execute(query)}
    return out


def _normal(row: Any) -> tuple[Any, ...]:
    # PostgreSQL sums as numeric; booleans may come back as 0/1 on SQLite.
    return tuple(int(v) if not isinstance(v, str) else v for v in row)


__all__ = [
    "SPLIT",
    "TOUCH_DIMENSIONS",
    "TOUCH_MODEL_COLUMN",
    "day_bounds",
    "local_day",
    "local_day_sql",
    "rebuild",
    "recount",
    "refresh",
    "stored",
    "sync_zone",
    "zone_of",
    "zone_offsets",
]
