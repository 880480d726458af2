"""The dashboard's overview of a site: tiles, a daily series, the funnel and breakdowns.

Everything is read from the rollups (:mod:`firsttag.analytics.rollups`), so a 30-day
overview reads about 3,000 quarter hours per table, whatever the number of rows behind
them. The counting rules are those of :mod:`firsttag.analytics.queries`: an order counts
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

Where the channel dimensions go: the channels issue adds channel, source, campaign,
landing page and device per touch in ``firsttag/analytics/``. Each becomes a
:class:`Dimension` in :data:`DIMENSIONS` (with a rollup column for it in the rollup key,
or with ``sessions=True`` when it also narrows the session tiles), and the page shows its
table with no other change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, case, func, literal, select

from firsttag import store
from firsttag.analytics import rollups
from firsttag.analytics.periods import Period
from firsttag.sites import Site


@dataclass(frozen=True)
class Dimension:
    """A way to split the numbers: ``key`` (URL parameter), ``label``, its rollup column."""

    key: str
    label: str
    column: str
    sessions: bool = False  # True when it narrows session counts too (none yet)


#: The breakdown tables of the overview, in page order. Channel dimensions: see above.
DIMENSIONS: dict[str, Dimension] = {
    d.key: d
    for d in (
        Dimension("name", "Conversion", "name"),
        Dimension("kind", "Kind", "kind"),
        Dimension("source", "Reported by", "source"),
    )
}

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


def _filters(filters: dict[str, str]) -> list[Any]:
    t = store.conversion_rollups
    return [t.c[DIMENSIONS[k].column] == v for k, v in sorted(filters.items()) if k in DIMENSIONS]


def _day_case(column: Any, period: Period) -> Any:
    # Local days as bucket ranges: exact across DST changes (a day may be 23 or 25 hours).
    starts = [rollups.bucket_at(m) for m in period.day_starts()]
    if len(starts) == 1:
        return literal(0)
    whens = [(column < b, i - 1) for i, b in enumerate(starts[1:], 1)]
    return case(*whens, else_=len(starts) - 1)


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
    conn: Any, site: Site, period: Period, filters: dict[str, str], *group: Any
) -> list[Any]:
    t = store.conversion_rollups
    lo, hi = (rollups.bucket_at(m) for m in period.utc_bounds())
    query = (
        select(
            *group,
            t.c.kind,
            t.c.source,
            t.c.status,
            t.c.currency,
            func.sum(t.c.conversions),
            func.sum(t.c.value_high),
            func.sum(t.c.value_low),
        )
        .where(t.c.site_id == site.id, t.c.bucket >= lo, t.c.bucket < hi, *_filters(filters))
        .group_by(*group, t.c.kind, t.c.source, t.c.status, t.c.currency)
    )
    return list(conn.execute(query))


def _sessions(conn: Any, site: Site, period: Period, *group: Any) -> list[Any]:
    t = store.session_rollups
    lo, hi = (rollups.bucket_at(m) for m in period.utc_bounds())
    query = (
        select(*group, t.c.clicked, func.sum(t.c.sessions))
        .where(t.c.site_id == site.id, t.c.bucket >= lo, t.c.bucket < hi, t.c.bot.is_(False))
        .group_by(*group, t.c.clicked)
    )
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
        for clicked, n in _sessions(conn, site, period):
            _add_sessions(out, clicked, n)
    return out


def series(
    engine: Engine, site: Site, period: Period, filters: dict[str, str]
) -> list[tuple[str, Totals]]:
    """Per local day of ``period``: (ISO date, numbers)."""
    days = [(d.isoformat(), Totals()) for d in period.dates()]
    with engine.connect() as conn:
        day_c = _day_case(store.conversion_rollups.c.bucket, period).label("day")
        for row in _conversions(conn, site, period, filters, day_c):
            _add(days[int(row[0])][1], site, row)
        day_s = _day_case(store.session_rollups.c.bucket, period).label("day")
        for day, clicked, n in _sessions(conn, site, period, day_s):
            _add_sessions(days[int(day)][1], clicked, n)
    return days


def breakdown(
    engine: Engine, site: Site, period: Period, dimension: str, filters: dict[str, str]
) -> list[tuple[str, Totals]]:
    """Rows of ``dimension`` in ``period`` with ``filters``: (value, numbers), most first.

    Rows whose conversions all fall outside the counting statuses are left out.
    """
    column = store.conversion_rollups.c[DIMENSIONS[dimension].column]
    rows: dict[str, Totals] = {}
    with engine.connect() as conn:
        for row in _conversions(conn, site, period, filters, column):
            _add(rows.setdefault(row[0], Totals()), site, row)
    return _ranked(rows)


def _ranked(rows: dict[str, Totals]) -> list[tuple[str, Totals]]:
    """Rows with something counted, most conversions first."""
    found = [(k, v) for k, v in rows.items() if v.leads or v.sales or v.browser_sales or v.other]
    found.sort(key=lambda kv: (-(kv[1].leads + kv[1].sales + kv[1].browser_sales + kv[1].other),
                               kv[0]))  # fmt: skip
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

    One grouped read of the conversion rollups (by day and by every dimension) serves the
    tiles, the days and every breakdown; one more serves the previous period's tiles.
    """
    t = store.conversion_rollups
    keys = list(DIMENSIONS)
    columns = [t.c[DIMENSIONS[k].column] for k in keys]
    days = [(d.isoformat(), Totals()) for d in period.dates()]
    now = Totals()
    splits: dict[str, dict[str, Totals]] = {k: {} for k in keys}
    with engine.connect() as conn:
        day_c = _day_case(t.c.bucket, period).label("day")
        for row in _conversions(conn, site, period, filters, day_c, *columns):
            _add(days[int(row[0])][1], site, row)
            _add(now, site, row)
            for i, key in enumerate(keys, 1):
                _add(splits[key].setdefault(row[i], Totals()), site, row)
        day_s = _day_case(store.session_rollups.c.bucket, period).label("day")
        for day, clicked, n in _sessions(conn, site, period, day_s):
            _add_sessions(days[int(day)][1], clicked, n)
            _add_sessions(now, clicked, n)
    return {
        "totals": now,
        "previous": totals(engine, site, period.previous(), filters),
        "series": days,
        "funnel": funnel(now),
        "breakdowns": {key: _ranked(rows) for key, rows in splits.items()},
    }
