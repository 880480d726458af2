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
the same transaction as the rows (:func:`firsttag.events.rows.write`). Before the write it
notes which of the batch's sessions exist and how each of its conversions counted; after
it, it reads back what the batch added or changed and counts the difference in memory:
a new row once, a changed conversion (an order update, a refund) out as it was and in as
it is (its day is its stored ``occurred_at``, which an update cannot move), a replay or a
stale order version the store refused not at all; then one upsert per table adds the
differences. The drain lease (:mod:`firsttag.events.buffer`) lets one batch be written
at a time, so nothing else writes the rows between the look before and the count after.
:func:`rebuild` and :func:`recount` count the same tables in SQL from all the rows, and
the tests hold the two ways equal.

What a day keeps: conversions per (kind, source, name, status, currency) with their count
and net value (value − refunded, split in two sums as in :mod:`firsttag.analytics.queries`
so no 64-bit sum can overflow); sessions per (bot, clicked). The site's counting settings
(counting statuses, browser revenue) apply when reading, so changing them needs no recount.

Touch rollups (the overview's channel breakdowns) keep the same numbers per touch
dimension (:data:`TOUCH_DIMENSIONS`), day and value ("" where unknown): a conversion under
the session the last-non-direct model credits (``last_non_direct_session_id``, frozen when
it was stored; the credited session was stored before it and sessions never change), a
session under its own touch (bots left out), with how many arrived with a click ID. Each
dimension is kept for the whole site and within each value of every other dimension
(:data:`TOUCH_PAIRS`): a page filtered on one channel, source, campaign, landing page or
device reads every other table from here, 30 rows per value for 30 days. A row or two per
event and pair is the price; two filters at once are counted from the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    TIMESTAMP,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
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
    """The local date (``YYYY-MM-DD``) in ``zone`` of a store timestamp.

    From the same offsets as :func:`local_day_sql`, so the worker's deltas and the SQL
    recount put a row on the same day.
    """
    return _shifted_day(timestamp, zone_offsets(zone, datetime.now(UTC).year + 1))


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


def _dimension(name: str, label: str = "dimension") -> Any:
    # A typed constant: PostgreSQL cannot infer an untyped parameter in INSERT … SELECT.
    return cast(literal(name), String(16)).label(label)


def _net() -> Any:
    c = store.conversions
    return c.c.value - c.c.refunded


#: (filter dimension, dimension) of every touch rollup row set: the whole site ("", B)
#: for each dimension B, and (F, B) within each value of every other dimension F.
TOUCH_PAIRS = tuple(("", b) for b in TOUCH_DIMENSIONS) + tuple(
    (f, b) for f in TOUCH_DIMENSIONS for b in TOUCH_DIMENSIONS if f != b
)
_CONVERSION_KEY = ("kind", "source", "name", "status", "currency")


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


def _pairs_select(profiles: Any, keys: list[str], sums: dict[str, Any]) -> Any:
    """Every (filter, dimension) row set, summed from ``profiles`` (one row per touch)."""
    p = profiles.c
    parts = []
    for f, b in TOUCH_PAIRS:
        # Touch columns are named t_<dimension>: a visit's source is not a conversion's.
        filter_value = p[f"t_{f}"] if f else cast(literal(""), Text)
        value = p[f"t_{b}"]
        group = [p.site_id, filter_value, p.day, value, *(p[k] for k in keys)]
        parts.append(
            select(
                p.site_id,
                _dimension(f, "filter_dimension"),
                filter_value.label("filter_value"),
                _dimension(b),
                p.day,
                value.label("value"),
                *(p[k] for k in keys),
                *(func.sum(p[n]).label(n) for n in sums),
            ).group_by(*group)
        )
    return union_all(*parts)


def _touch_conversion_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    # First one row per (day, touch, conversion key): the 25 row sets are sums of those.
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
    touch = [func.coalesce(credited.c[d], "") for d in TOUCH_DIMENSIONS]
    key = [c.c.kind, c.c.source, c.c.name, func.coalesce(c.c.status, ""),
           func.coalesce(c.c.currency, "")]  # fmt: skip
    profiles = (
        select(
            c.c.site_id,
            day.label("day"),
            *(t.label(f"t_{d}") for t, d in zip(touch, TOUCH_DIMENSIONS, strict=True)),
            *(k.label(n) for k, n in zip(key, _CONVERSION_KEY, strict=True)),
            func.count().label("conversions"),
            func.coalesce(func.sum(_net() // SPLIT), 0).label("value_high"),
            func.coalesce(func.sum(_net() % SPLIT), 0).label("value_low"),
        )
        .select_from(joined)
        .where(c.c.site_id == site_id, where)
        .group_by(c.c.site_id, day, *touch, *key)
        .cte("profiles")
    )
    return _pairs_select(profiles, list(_CONVERSION_KEY), dict.fromkeys(_MEASURES["conversion"]))


def _touch_session_select(dialect: str, zone: str, site_id: str, where: Any) -> Any:
    s = store.sessions
    day = local_day_sql(dialect, s.c.created_at, zone)
    touch = [func.coalesce(s.c[d], "") for d in TOUCH_DIMENSIONS]
    profiles = (
        select(
            s.c.site_id,
            day.label("day"),
            *(t.label(f"t_{d}") for t, d in zip(touch, TOUCH_DIMENSIONS, strict=True)),
            func.count().label("sessions"),
            func.sum(case((s.c.click_id.is_not(None), 1), else_=0)).label("click_sessions"),
        )
        .where(s.c.site_id == site_id, s.c.bot.is_(False), where)
        .group_by(s.c.site_id, day, *touch)
        .cte("profiles")
    )
    return _pairs_select(profiles, [], dict.fromkeys(_MEASURES["session"]))


_MEASURES = {
    "conversion": ("conversions", "value_high", "value_low"),
    "session": ("sessions", "click_sessions"),
}


@dataclass(frozen=True)
class _Plan:
    """One rollup table: its measure columns, and the select counting it from the rows."""

    table: Any
    measures: tuple[str, ...]
    make: Any

    @property
    def key(self) -> list[str]:
        return [c.name for c in self.table.primary_key.columns]

    @property
    def columns(self) -> list[str]:
        return self.key + list(self.measures)


#: Per kind of row: the rollup tables it counts in.
_PLANS = {
    "conversions": (
        _Plan(conversion_days, _MEASURES["conversion"], _conversion_select),
        _Plan(touch_conversion_days, _MEASURES["conversion"], _touch_conversion_select),
    ),
    "sessions": (
        _Plan(session_days, ("sessions",), _session_select),
        _Plan(touch_session_days, _MEASURES["session"], _touch_session_select),
    ),
}
_ALL_PLANS = _PLANS["conversions"] + _PLANS["sessions"]


# --- The worker's deltas, counted in Python from the rows a batch added or changed. ---


def _split(net: int | None) -> tuple[int, int]:
    """(net // SPLIT, net % SPLIT) as the databases compute them (truncating)."""
    if net is None:
        return 0, 0
    high = -(-net // SPLIT) if net < 0 else net // SPLIT
    return high, net - high * SPLIT


class _Deltas:
    """Changes to the rollup tables, summed in memory.

    First per visit profile (day, touch values, and the conversion's key or the session's
    flags): a batch has far fewer profiles than events, and each profile then fans out to
    the 25 touch row sets once, not once per event.
    """

    def __init__(self, site_id: str, zone: str) -> None:
        self.site_id = site_id
        self.offsets = zone_offsets(zone, datetime.now(UTC).year + 1)
        self.sessions: dict[tuple[Any, ...], int] = {}
        self.conversions: dict[tuple[Any, ...], list[int]] = {}
        self._days: dict[str, str] = {}

    def day(self, timestamp: str) -> str:
        minute = timestamp[:16]
        if minute not in self._days:
            self._days[minute] = _shifted_day(timestamp, self.offsets)
        return self._days[minute]

    def session(self, row: Any) -> None:
        """Count a session row (created_at, bot, click_id and the touch columns) once."""
        key = (self.day(row.created_at), bool(row.bot), row.click_id is not None, _touch(row))
        self.sessions[key] = self.sessions.get(key, 0) + 1

    def conversion(self, row: Any, sign: int) -> None:
        """Count a conversion row (with its credited touch) ``sign`` times (+1 or -1)."""
        net = None if row.value is None or row.refunded is None else row.value - row.refunded
        high, low = _split(net)
        key = (
            self.day(row.occurred_at),
            _touch(row),
            (row.kind, row.source, row.name, row.status or "", row.currency or ""),
        )
        _bump(self.conversions, key, (sign, sign * high, sign * low))

    @property
    def tables(self) -> dict[Any, dict[tuple[Any, ...], list[int]]]:
        """The changes per rollup table, keyed by its primary key."""
        out: dict[Any, dict[tuple[Any, ...], list[int]]] = {p.table: {} for p in _ALL_PLANS}
        site = self.site_id
        for (day, bot, clicked, touch), n in self.sessions.items():
            _bump(out[session_days], (site, day, bot, clicked), (n,))
            if bot:
                continue
            values = dict(zip(TOUCH_DIMENSIONS, touch, strict=True))
            for f, b in TOUCH_PAIRS:
                key = (site, f, values[f] if f else "", b, day, values[b])
                _bump(out[touch_session_days], key, (n, n if clicked else 0))
        for (day, touch, key), measures in self.conversions.items():
            _bump(out[conversion_days], (site, day, *key), measures)
            values = dict(zip(TOUCH_DIMENSIONS, touch, strict=True))
            for f, b in TOUCH_PAIRS:
                pair = (site, f, values[f] if f else "", b, day, values[b], *key)
                _bump(out[touch_conversion_days], pair, measures)
        return out

    def write(self, conn: Any) -> None:
        """Upsert the changes: a new key is inserted, a known one increased.

        A key a change took everything from (an order that moved to another status) is
        deleted, as a recount would not have it. The statements go straight to the
        driver's ``executemany``: a batch of visits is tens of thousands of rows, and
        SQLAlchemy's per-row parameter handling cost more than the database's upserts.
        """
        tables = self.tables
        for plan in _ALL_PLANS:
            changes = [(k, m) for k, m in tables[plan.table].items() if any(m)]
            if not changes:
                continue
            upsert, empty = _driver_sql(conn.dialect.name, plan)
            conn.exec_driver_sql(upsert, [(*k, *m) for k, m in changes])
            shrunk = [k for k, m in changes if min(m) < 0]
            if shrunk:
                conn.exec_driver_sql(empty, shrunk)


def _bump(
    counts: dict[tuple[Any, ...], list[int]], key: tuple[Any, ...], add: tuple[int, ...]
) -> None:
    found = counts.get(key)
    if found is None:
        counts[key] = list(add)
    else:
        for i, m in enumerate(add):
            found[i] += m


@lru_cache(maxsize=16)
def _driver_sql(dialect: str, plan: _Plan) -> tuple[str, str]:
    """The upsert of ``plan``'s table, and the delete of an emptied key, in the driver's
    own parameter style (our table and column names only)."""
    mark = "?" if dialect == "sqlite" else "%s"
    table = plan.table.name
    columns = ", ".join(f'"{c}"' for c in plan.columns)
    marks = ", ".join([mark] * len(plan.columns))
    key = ", ".join(f'"{c}"' for c in plan.key)
    add = ", ".join(f'"{m}" = {table}."{m}" + excluded."{m}"' for m in plan.measures)
    upsert = (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT ({key}) DO UPDATE SET {add}"
    )
    where = " AND ".join(
        [f'"{c}" = {mark}' for c in plan.key] + [f'"{m}" = 0' for m in plan.measures]
    )
    return upsert, f"DELETE FROM {table} WHERE {where}"  # noqa: S608


def _touch(row: Any) -> tuple[str, ...]:
    """A facts row's touch values, in TOUCH_DIMENSIONS order ("" where unknown, as the SQL
    coalesces)."""
    return (row.t_channel or "", row.t_source or "", row.t_campaign or "",
            row.t_landing_page or "", row.t_device or "")  # fmt: skip


def _shifted_day(timestamp: str, offsets: tuple[tuple[str, int], ...]) -> str:
    """The local date of a store timestamp, by the offset in force (as local_day_sql)."""
    minutes = offsets[0][1]
    for start, offset in reversed(offsets):
        if timestamp >= start:
            minutes = offset
            break
    moment = datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S")
    return (moment + timedelta(minutes=minutes)).date().isoformat()


def _conversion_facts(conn: Any, site_id: str, keys: list[str]) -> list[Any]:
    """What counts of the conversions ``keys``: key columns, time, money, credited touch."""
    c = store.conversions
    credited = store.sessions.alias("credited")
    joined = c.outerjoin(
        credited,
        and_(credited.c.site_id == c.c.site_id, credited.c.session_id == c.c[TOUCH_MODEL_COLUMN]),
    )
    out: list[Any] = []
    for i in range(0, len(keys), _KEY_CHUNK):
        query = (
            select(
                c.c.dedup_key,
                c.c.kind,
                c.c.source,
                c.c.name,
                c.c.status,
                c.c.currency,
                c.c.occurred_at,
                c.c.value,
                c.c.refunded,
                *(credited.c[d].label(f"t_{d}") for d in TOUCH_DIMENSIONS),
            )
            .select_from(joined)
            .where(c.c.site_id == site_id, c.c.dedup_key.in_(bindparam("keys", expanding=True)))
        )
        out.extend(conn.execute(query, {"keys": keys[i : i + _KEY_CHUNK]}))
    return out


def _session_facts(conn: Any, site_id: str, ids: list[str]) -> list[Any]:
    s = store.sessions
    out: list[Any] = []
    for i in range(0, len(ids), _KEY_CHUNK):
        query = select(
            s.c.created_at,
            s.c.bot,
            s.c.click_id,
            *(s.c[d].label(f"t_{d}") for d in TOUCH_DIMENSIONS),
        ).where(s.c.site_id == site_id, s.c.session_id.in_(bindparam("ids", expanding=True)))
        out.extend(conn.execute(query, {"ids": ids[i : i + _KEY_CHUNK]}))
    return out


@dataclass(frozen=True)
class Stored:
    """What of a batch was stored before it: session IDs, and conversions as they counted."""

    sessions: dict[str, set[str]]
    conversions: dict[str, dict[str, Any]]  # site → dedup key → its facts before the batch


def _batch_keys(events: list[Event]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    sessions: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event.body, Session):
            sessions.setdefault(event.site, set()).add(event.body.session_id)
        elif isinstance(event.body, Conversion):
            site_keys = keys.setdefault(event.site, set())
            site_keys.add(event.body.dedup_key)
            if event.body.customer_id:
                # A conversion of a customer erased before it arrived is stored under its
                # erased key (store.erased_conversion_fields): look for both. Only one
                # with a customer can be erased.
                site_keys.add(store.erased_dedup_key(event.site, event.body.dedup_key))
    return sessions, keys


def _present(conn: Any, site_id: str, values: set[str]) -> set[str]:
    s = store.sessions
    ordered = sorted(values)
    found: set[str] = set()
    for i in range(0, len(ordered), _KEY_CHUNK):
        chunk = ordered[i : i + _KEY_CHUNK]
        found.update(
            conn.execute(
                select(s.c.session_id).where(
                    s.c.site_id == site_id, s.c.session_id.in_(bindparam("ids", expanding=True))
                ),
                {"ids": chunk},
            ).scalars()
        )
    return found


def stored_before(conn: Any, events: list[Event]) -> Stored:
    """What of ``events`` is already stored; call on the rows' transaction before writing."""
    sessions, keys = _batch_keys(events)
    return Stored(
        {site: _present(conn, site, ids) for site, ids in sessions.items()},
        {
            site: {row.dedup_key: row for row in _conversion_facts(conn, site, sorted(k))}
            for site, k in keys.items()
        },
    )


def refresh(conn: Any, events: list[Event], before: Stored) -> None:
    """Bring the days ``events`` changed up to date, on ``conn`` (the rows' transaction).

    Call after the rows of ``events`` are written, with what :func:`stored_before` found.
    Each site's rollups first follow its zone (:func:`sync_zone`; a recount there counts
    this batch too). Then every row the batch added counts once, and every conversion it
    changed (an order update, a refund) is taken out as it counted before and counted as
    it is now; a replayed event changed nothing, so it adds nothing.
    """
    sessions, keys = _batch_keys(events)
    for site_id in sorted(set(sessions) | set(keys)):  # one lock order for every writer
        zone, recounted = sync_zone(conn, site_id)
        if recounted:
            continue
        deltas = _Deltas(site_id, zone)
        new = sorted(sessions.get(site_id, set()) - before.sessions.get(site_id, set()))
        for row in _session_facts(conn, site_id, new):
            deltas.session(row)
        old = before.conversions.get(site_id, {})
        for row in _conversion_facts(conn, site_id, sorted(keys.get(site_id, set()))):
            was = old.get(row.dedup_key)
            if was is not None and tuple(was) == tuple(row):
                continue  # a replay, or an order version the store refused
            if was is not None:
                deltas.conversion(was, -1)
            deltas.conversion(row, +1)
        deltas.write(conn)


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
    "TOUCH_PAIRS",
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
