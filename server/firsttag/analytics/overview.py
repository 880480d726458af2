"""The dashboard's overview of a site: tiles, a daily series, the funnel and breakdowns.

Everything is read from the rollups (:mod:`firsttag.analytics.rollups`), so a 30-day
overview reads 30 local days per key, whatever the number of rows behind them. The
counting rules are those of :mod:`firsttag.analytics.queries`: an order counts
when its status is one of the site's counting statuses; revenue is value minus refunds,
per currency; sales and values a browser reported are shown apart and join the confirmed
ones only where the site counts browser revenue.

Two differences from the API's funnel, both because the overview must stay fast on a
big site: the funnel's first step is *click sessions* (sessions that arrived with a click
ID), not distinct click IDs, and known bots are always left out.

Breakdowns and filters are generic: a :class:`Dimension` names a rollup column; a
breakdown is a dimension → rows of the same numbers as the tiles; a filter is a
dimension = value, applied to every conversion panel. Dimensions of the conversion rows
(``name``, ``kind``, ``source``) filter the conversion panels; the session tiles do not
change with them (a session has no conversion name) and the page says so.

Channel dimensions (``sessions=True``): channel, source, campaign, landing page and device
of a visit (:mod:`firsttag.touches`). A conversion counts under the session the
last-non-direct model credits it to; sessions under their own touch. They are read from
the touch rollups (:mod:`firsttag.analytics.rollups`), and a filter on one of them narrows
the session tiles too. The touch rollups hold each channel table within each value of the
others, so one channel filter is read from them too; with two channel filters at once the
page is counted from the rows, within the filters. So is everything while the rollups
still count days in a time zone the site has just left
(:func:`firsttag.analytics.rollups.zone_of`). ``""`` (an
unknown value) is shown and filtered as :data:`NONE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, case, func, literal, select

from firsttag import store
from firsttag.analytics import explore, rollups
from firsttag.analytics.periods import Period
from firsttag.sites import Site


@dataclass(frozen=True)
class Dimension:
    """A way to split the numbers: ``key`` (URL parameter), ``label``, its rollup column."""

    key: str
    label: str
    column: str
    sessions: bool = False  # a channel dimension: narrows session counts too


#: The breakdown tables of the overview, in page order. Channel dimensions: see above;
#: their ``column`` is the ``sessions`` column (and the touch rollups' ``dimension``).
DIMENSIONS: dict[str, Dimension] = {
    d.key: d
    for d in (
        Dimension("channel", "Channel", "channel", sessions=True),
        Dimension("visit_source", "Source", "source", sessions=True),
        Dimension("campaign", "Campaign", "campaign", sessions=True),
        Dimension("landing_page", "Landing page", "landing_page", sessions=True),
        Dimension("device", "Device", "device", sessions=True),
        Dimension("name", "Conversion", "name"),
        Dimension("kind", "Kind", "kind"),
        Dimension("source", "Reported by", "source"),
    )
}

#: How an unknown channel value (no credited visit, or a visit without it) is shown and
#: filtered: conversions with no non-direct visit in the window, for instance.
NONE = explore.NONE

#: Kind and source values as shown on the page.
KIND_LABELS = {"lead": "Lead", "sale": "Sale", "conversion": "Other conversion"}
SOURCE_LABELS = {
    "browser": "Browser (tag)",
    "order": "Order webhook",
    "track": "Track API",
    "event": "Events API",
    "server": "Server",
}


@dataclass
class Totals:
    """The numbers of one tile row, one day, or one breakdown row."""

    sessions: int = 0
    click_sessions: int = 0
    leads: int = 0
    sales: int = 0  # confirmed, plus browser ones where the site counts them
    browser_sales: int = 0
    other: int = 0  # conversions that are neither a lead nor a sale
    revenue: dict[str, int] = field(default_factory=dict)
    browser_revenue: dict[str, int] = field(default_factory=dict)

    @property
    def conversion_rate(self) -> float | None:
        """Sales per click session (None without click sessions)."""
        return self.sales / self.click_sessions if self.click_sessions else None

    def as_dict(self) -> dict[str, Any]:
        """The numbers as JSON-ready data."""
        return {
            "sessions": self.sessions,
            "clickSessions": self.click_sessions,
            "leads": self.leads,
            "sales": self.sales,
            "browserSales": self.browser_sales,
            "otherConversions": self.other,
            "revenue": dict(sorted(self.revenue.items())),
            "browserRevenue": dict(sorted(self.browser_revenue.items())),
            "conversionRate": self.conversion_rate,
        }


def _touch_keys(filters: dict[str, str]) -> list[str]:
    return sorted(k for k in filters if k in DIMENSIONS and DIMENSIONS[k].sessions)


def _stored(value: str) -> str:
    return "" if value == NONE else value


def _day_case(column: Any, period: Period) -> Any:
    # Local days of the rows as UTC ranges: exact across DST changes (a day may be 23 or 25
    # hours).
    starts = [store.format_time(m) for m in period.day_starts()]
    if len(starts) == 1:
        return literal(0)
    whens = [(column < b, i - 1) for i, b in enumerate(starts[1:], 1)]
    return case(*whens, else_=len(starts) - 1)


def _utc_bounds(period: Period) -> tuple[str, str]:
    lo, hi = period.utc_bounds()
    return store.format_time(lo), store.format_time(hi)


def _from_rollups(conn: Any, site: Site, period: Period) -> bool:
    """Whether the rollups count days in the period's zone (they lag a zone change)."""
    return rollups.zone_of(conn, site.id) == period.zone


def _day_index(rows: list[Any], period: Period) -> list[Any]:
    """Rollup rows led by a local date, led instead by its index in ``period``."""
    index = {d.isoformat(): i for i, d in enumerate(period.dates())}
    return [(index[row[0]], *row[1:]) for row in rows]


def _add(totals: Totals, site: Site, row: Any) -> None:
    """Count one grouped rollup row (kind, source, status, currency, n, high, low)."""
    kind, source, status, currency, n, high, low = row[-7:]
    if status and status not in site.settings.counting_statuses:
        return
    n = int(n)
    net = int(high) * rollups.SPLIT + int(low)
    if kind == "lead":
        totals.leads += n
    elif kind == "sale":
        browser = source in store.BROWSER_SOURCES
        if browser:
            totals.browser_sales += n
            if currency:
                totals.browser_revenue[currency] = totals.browser_revenue.get(currency, 0) + net
        if not browser or site.settings.count_browser_revenue:
            totals.sales += n
            if currency:
                totals.revenue[currency] = totals.revenue.get(currency, 0) + net
    else:
        totals.other += n


def _conversions(
    conn: Any,
    site: Site,
    period: Period,
    filters: dict[str, str],
    dims: tuple[str, ...] = (),
    by_day: bool = False,
) -> list[Any]:
    """Rows (day?, value of each of ``dims``, kind, source, status, currency, n, high, low).

    Read from the conversion rollups without channel dimensions; from the touch rollups
    with one channel dimension in ``dims`` and at most one channel filter; from the rows
    with two channel filters.
    """
    touch_dims = [d for d in dims if DIMENSIONS[d].sessions]
    if not _rollups_answer(conn, site, period, filters, touch_dims):
        return _conversions_from_rows(conn, site, filters, dims, by_day, period)
    first, last = period.start.isoformat(), period.end.isoformat()
    if touch_dims or _touch_keys(filters):
        t = store.touch_conversion_days
        where, touch_value = _touch_where(t, filters, touch_dims[0] if touch_dims else None)
    else:
        t, where, touch_value = store.conversion_days, [], None
    where += [t.c.site_id == site.id, t.c.day >= first, t.c.day <= last]
    where += [t.c[DIMENSIONS[k].column] == v for k, v in sorted(filters.items())
              if k in DIMENSIONS and not DIMENSIONS[k].sessions]  # fmt: skip
    group = [t.c.day] if by_day else []
    group += [touch_value if DIMENSIONS[d].sessions else t.c[DIMENSIONS[d].column] for d in dims]
    rows = _grouped(conn, t, where, group, func.sum(t.c.conversions),
                    func.sum(t.c.value_high), func.sum(t.c.value_low))  # fmt: skip
    return _day_index(rows, period) if by_day else rows


def _rollups_answer(
    conn: Any, site: Site, period: Period, filters: dict[str, str], touch_dims: list[str]
) -> bool:
    """Whether the rollups hold what a panel asks for (else it is counted from the rows)."""
    keys = _touch_keys(filters)
    if len(keys) == 2:  # the pair of the two filters holds their tiles and their own tables
        fits = set(touch_dims) <= set(keys)
    else:
        fits = len(keys) <= 1 and len(touch_dims) <= 1
    return fits and _from_rollups(conn, site, period)


def _touch_where(t: Any, filters: dict[str, str], dim: str | None) -> tuple[list[Any], Any]:
    """Where a touch rollup holds ``dim`` (or the totals) within the channel filter, if any.

    Returns the conditions and the column holding ``dim``'s value. Without a filter: the
    whole site's rows of ``dim``. With a filter F = v: the rows of ``dim`` within v; for
    the totals, or a table of F itself, those of another dimension, summed (every visit
    has exactly one value of each dimension, "" where unknown), whose filter value is v.
    With two filters F1 = v1 and F2 = v2: the rows of F2 within v1 whose value is v2 (for
    the totals and the tables of F1 and F2 only).
    """
    keys = _touch_keys(filters)
    if not keys:
        assert dim is not None
        where = [t.c.filter_dimension == "", t.c.filter_value == "",
                 t.c.dimension == DIMENSIONS[dim].column]  # fmt: skip
        return where, t.c.value
    f = DIMENSIONS[keys[0]].column
    where = [t.c.filter_dimension == f, t.c.filter_value == _stored(filters[keys[0]])]
    if len(keys) == 2:  # F1 = v1 and F2 = v2: the rows of F2 within v1 whose value is v2
        g = DIMENSIONS[keys[1]].column
        where += [t.c.dimension == g, t.c.value == _stored(filters[keys[1]])]
        shown = t.c.value if dim is not None and DIMENSIONS[dim].column == g else t.c.filter_value
        return where, shown
    if dim is not None and DIMENSIONS[dim].column != f:
        return [*where, t.c.dimension == DIMENSIONS[dim].column], t.c.value
    other = "device" if f != "device" else "channel"
    return [*where, t.c.dimension == other], t.c.filter_value


def _grouped(conn: Any, t: Any, where: list[Any], group: list[Any], *sums: Any) -> list[Any]:
    query = (
        select(*group, t.c.kind, t.c.source, t.c.status, t.c.currency, *sums)
        .where(*where)
        .group_by(*group, t.c.kind, t.c.source, t.c.status, t.c.currency)
    )
    return list(conn.execute(query))


def _conversions_from_rows(
    conn: Any,
    site: Site,
    filters: dict[str, str],
    dims: tuple[str, ...],
    by_day: bool,
    period: Period,
) -> list[Any]:
    """As :func:`_conversions`, counted from the conversions and their credited sessions."""
    c = store.conversions
    credited = store.sessions.alias("credited")
    on = and_(
        credited.c.site_id == c.c.site_id,
        credited.c.session_id == c.c[rollups.TOUCH_MODEL_COLUMN],
    )
    touch = {DIMENSIONS[k].column: _stored(filters[k]) for k in _touch_keys(filters)}
    # Filters on known values need a credited visit: an inner join, with conditions the
    # database applies to the sessions before joining (not to every joined row).
    inner = bool(touch) and all(touch.values())
    joined = c.join(credited, on) if inner else c.outerjoin(credited, on)

    def column(key: str) -> Any:
        dim = DIMENSIONS[key]
        return func.coalesce(credited.c[dim.column], "") if dim.sessions else c.c[dim.column]

    lo, hi = _utc_bounds(period)
    where = [c.c.site_id == site.id, c.c.occurred_at >= lo, c.c.occurred_at < hi]
    where += [
        (credited.c[DIMENSIONS[k].column] if inner else column(k)) == _stored(v)
        if DIMENSIONS[k].sessions
        else column(k) == v
        for k, v in sorted(filters.items())
        if k in DIMENSIONS
    ]
    group = [_day_case(c.c.occurred_at, period)] if by_day else []
    group += [column(d) for d in dims]
    status, currency = func.coalesce(c.c.status, ""), func.coalesce(c.c.currency, "")
    net = c.c.value - c.c.refunded
    query = (
        select(
            *group,
            c.c.kind,
            c.c.source,
            status,
            currency,
            func.count(),
            func.coalesce(func.sum(net // rollups.SPLIT), 0),
            func.coalesce(func.sum(net % rollups.SPLIT), 0),
        )
        .select_from(joined)
        .where(*where)
        .group_by(*group, c.c.kind, c.c.source, status, currency)
    )
    return list(conn.execute(query))


def _sessions(
    conn: Any,
    site: Site,
    period: Period,
    filters: dict[str, str],
    dim: str | None = None,
    by_day: bool = False,
) -> list[Any]:
    """Rows (day?, value of ``dim``?, clicked, sessions), bots left out.

    Only channel filters narrow sessions (a session has no conversion name or kind).
    """
    if not _rollups_answer(conn, site, period, filters, [dim] if dim else []):
        return _sessions_from_rows(conn, site, period, filters, (dim,) if dim else (), by_day)
    first, last = period.start.isoformat(), period.end.isoformat()
    if dim or _touch_keys(filters):
        t = store.touch_session_days
        where, touch_value = _touch_where(t, filters, dim)
        where += [t.c.site_id == site.id, t.c.day >= first, t.c.day <= last]
        group = ([t.c.day] if by_day else []) + ([touch_value] if dim else [])
        query = select(*group, func.sum(t.c.sessions), func.sum(t.c.click_sessions))
        rows = []
        for *head, n, clicks in conn.execute(query.where(*where).group_by(*group)):
            if n is not None:  # no group: one row of NULL sums when nothing matched
                rows += [(*head, False, int(n) - int(clicks)), (*head, True, int(clicks))]
    else:
        t = store.session_days
        where = [t.c.site_id == site.id, t.c.day >= first, t.c.day <= last, t.c.bot.is_(False)]
        group = [t.c.day] if by_day else []
        query = select(*group, t.c.clicked, func.sum(t.c.sessions))
        rows = list(conn.execute(query.where(*where).group_by(*group, t.c.clicked)))
    return _day_index(rows, period) if by_day else rows


def _sessions_from_rows(
    conn: Any,
    site: Site,
    period: Period,
    filters: dict[str, str],
    dims: tuple[str, ...],
    by_day: bool,
) -> list[Any]:
    """As :func:`_sessions`, counted from the sessions, with any number of ``dims``."""
    lo, hi = _utc_bounds(period)
    s = store.sessions
    where = [s.c.site_id == site.id, s.c.created_at >= lo, s.c.created_at < hi,
             s.c.bot.is_(False)]  # fmt: skip
    where += [
        func.coalesce(s.c[DIMENSIONS[k].column], "") == _stored(filters[k])
        for k in _touch_keys(filters)
    ]
    group = [_day_case(s.c.created_at, period)] if by_day else []
    group += [func.coalesce(s.c[DIMENSIONS[d].column], "") for d in dims]
    clicked = s.c.click_id.is_not(None)
    query = select(*group, clicked, func.count()).where(*where).group_by(*group, clicked)
    return list(conn.execute(query))


def _add_sessions(totals: Totals, clicked: Any, n: Any) -> None:
    totals.sessions += int(n)
    if clicked:
        totals.click_sessions += int(n)


def totals(engine: Engine, site: Site, period: Period, filters: dict[str, str]) -> Totals:
    """The tiles' numbers for ``period`` with ``filters``."""
    out = Totals()
    with engine.connect() as conn:
        for row in _conversions(conn, site, period, filters):
            _add(out, site, row)
        for clicked, n in _sessions(conn, site, period, filters):
            _add_sessions(out, clicked, n)
    return out


def series(
    engine: Engine, site: Site, period: Period, filters: dict[str, str]
) -> list[tuple[str, Totals]]:
    """Per local day of ``period``: (ISO date, numbers)."""
    days = [(d.isoformat(), Totals()) for d in period.dates()]
    with engine.connect() as conn:
        for row in _conversions(conn, site, period, filters, by_day=True):
            _add(days[int(row[0])][1], site, row)
        for day, clicked, n in _sessions(conn, site, period, filters, by_day=True):
            _add_sessions(days[int(day)][1], clicked, n)
    return days


def _shown(value: Any) -> str:
    return NONE if value in ("", None) else str(value)


def _breakdown_rows(
    conn: Any, site: Site, period: Period, dimension: str, filters: dict[str, str]
) -> dict[str, Totals]:
    rows: dict[str, Totals] = {}
    for row in _conversions(conn, site, period, filters, (dimension,)):
        _add(rows.setdefault(_shown(row[0]), Totals()), site, row)
    if DIMENSIONS[dimension].sessions:
        for value, clicked, n in _sessions(conn, site, period, filters, dimension):
            _add_sessions(rows.setdefault(_shown(value), Totals()), clicked, n)
    return rows


def _breakdowns_from_rows(
    conn: Any, site: Site, period: Period, filters: dict[str, str], dims: tuple[str, ...]
) -> dict[str, dict[str, Totals]]:
    """The tables of channel ``dims`` counted from the rows: one read of each kind of row,
    grouped by all of them, split here (a page with two channel filters)."""
    out: dict[str, dict[str, Totals]] = {d: {} for d in dims}
    if not dims:
        return out
    for row in _conversions_from_rows(conn, site, filters, dims, False, period):
        for i, key in enumerate(dims):
            _add(out[key].setdefault(_shown(row[i]), Totals()), site, row)
    for *values, clicked, n in _sessions_from_rows(conn, site, period, filters, dims, False):
        for key, value in zip(dims, values, strict=True):
            _add_sessions(out[key].setdefault(_shown(value), Totals()), clicked, n)
    return out


def breakdown(
    engine: Engine, site: Site, period: Period, dimension: str, filters: dict[str, str]
) -> list[tuple[str, Totals]]:
    """Rows of ``dimension`` in ``period`` with ``filters``: (value, numbers), most first.

    Rows with nothing counted (conversions all outside the counting statuses, and no
    sessions) are left out.
    """
    with engine.connect() as conn:
        return _ranked(_breakdown_rows(conn, site, period, dimension, filters))


def _ranked(rows: dict[str, Totals]) -> list[tuple[str, Totals]]:
    """Rows with something counted, most conversions (then sessions) first."""

    def conversions(t: Totals) -> int:
        return t.leads + t.sales + t.browser_sales + t.other

    found = [(k, v) for k, v in rows.items() if conversions(v) or v.sessions]
    found.sort(key=lambda kv: (-conversions(kv[1]), -kv[1].sessions, kv[0]))
    return found


def funnel(t: Totals) -> list[dict[str, Any]]:
    """Click sessions → leads → sales, each with its rate from the step before."""
    steps = [("Click sessions", t.click_sessions), ("Leads", t.leads), ("Sales", t.sales)]
    out = []
    before = None
    for label, count in steps:
        rate = (count / before if before else None) if before is not None else None
        out.append({"label": label, "count": count, "rate": rate})
        before = count
    return out


def report(engine: Engine, site: Site, period: Period, filters: dict[str, str]) -> dict[str, Any]:
    """All the overview page shows: tiles now and before, the days, funnel, breakdowns.

    One grouped read (by day and by every conversion dimension) serves the tiles, the
    days and the conversion breakdowns; each channel breakdown is one more read of its
    touch rollups (sessions and conversions); the previous period's tiles two more. With
    two channel filters, the channel tables the rollups cannot hold are one read of the
    rows of each kind.
    """
    plain = tuple(k for k, d in DIMENSIONS.items() if not d.sessions)
    days = [(d.isoformat(), Totals()) for d in period.dates()]
    now = Totals()
    splits: dict[str, dict[str, Totals]] = {k: {} for k in plain}
    with engine.connect() as conn:
        for row in _conversions(conn, site, period, filters, plain, by_day=True):
            _add(days[int(row[0])][1], site, row)
            _add(now, site, row)
            for i, key in enumerate(plain, 1):
                _add(splits[key].setdefault(row[i], Totals()), site, row)
        for day, clicked, n in _sessions(conn, site, period, filters, by_day=True):
            _add_sessions(days[int(day)][1], clicked, n)
            _add_sessions(now, clicked, n)
        touch = [k for k, d in DIMENSIONS.items() if d.sessions]
        counted = [k for k in touch if not _rollups_answer(conn, site, period, filters, [k])]
        for key in touch:
            if key not in counted:
                splits[key] = _breakdown_rows(conn, site, period, key, filters)
        splits.update(_breakdowns_from_rows(conn, site, period, filters, tuple(counted)))
    return {
        "totals": now,
        "previous": totals(engine, site, period.previous(), filters),
        "series": days,
        "funnel": funnel(now),
        "breakdowns": {key: _ranked(splits[key]) for key in DIMENSIONS},
    }
