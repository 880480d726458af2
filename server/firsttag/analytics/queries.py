"""Analytics: the funnel (clicks → leads → sales) and a daily time series, per site.

A conversion counts when it is not an order, or when its order status is one of the
site's counting statuses; revenue is value minus refunds, per currency (amounts in
different currencies are never added together).

Money has two trust levels. ``revenue`` and the ``sales`` counts come from back ends (the
secret key: orders, track/sale, events, server conversions). Sales reported by browsers
(``firsttag.convert()`` with a value, sent with the public key) are shown apart as
``browserSales`` and ``browserRevenue``, and join ``revenue`` and ``sales`` only on a site
with ``count_browser_revenue`` on.

Sums are exact and cannot overflow: every stored value is at most
``money.MAX_MINOR_UNITS`` (< 2**50), and each is summed as two parts below and above
2**24, so a 64-bit SUM (SQLite raises past 2**63) would need 2**37 rows in one answer.

Pure: no Flask. :mod:`firsttag.web.analytics` reads the query arguments and answers.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, true

from firsttag import store
from firsttag.sites import Site

#: Values are summed as ``value // _SPLIT`` and ``value % _SPLIT``; see the module docstring.
_SPLIT = 2**24


def _counted(site: Site) -> Any:
    c = store.conversions
    return or_(c.c.status.is_(None), c.c.status.in_(site.settings.counting_statuses))


def counted(site: Site) -> Any:
    """The SQL condition under which a stored conversion counts for ``site`` (see above)."""
    return _counted(site)


def _range(start: date, end: date) -> tuple[str, str]:
    # Inclusive dates as half-open UTC timestamps: [start 00:00, end+1 00:00).
    return f"{start.isoformat()}T00:00:00", f"{(end + timedelta(days=1)).isoformat()}T00:00:00"


def _human(exclude_bots: bool) -> Any:
    # Sessions of automated browsers and known bots (firsttag/bots.py) are not clicks.
    return store.sessions.c.bot.is_(False) if exclude_bots else true()


def funnel(
    engine: Engine, site: Site, start: date, end: date, exclude_bots: bool = False
) -> dict[str, Any]:
    """Clicks, leads and sales in [start, end], with conversion and drop-off rates.

    Also revenue per currency, and the sales and values browsers reported, shown apart.
    """
    lo, hi = _range(start, end)
    s, c = store.sessions, store.conversions
    with engine.connect() as conn:
        clicks = conn.execute(
            select(func.count(func.distinct(s.c.click_id))).where(
                s.c.site_id == site.id,
                _human(exclude_bots),
                s.c.click_id.is_not(None),
                s.c.created_at >= lo,
                s.c.created_at < hi,
            )
        ).scalar_one()
        counts: Counter[str] = Counter()
        for kind, source, n in conn.execute(
            select(c.c.kind, c.c.source, func.count())
            .where(
                c.c.site_id == site.id,
                c.c.occurred_at >= lo,
                c.c.occurred_at < hi,
                c.c.kind.in_(("lead", "sale")),
                _counted(site),
            )
            .group_by(c.c.kind, c.c.source)
        ).all():
            counts[_outcome(kind, source)] += n
        revenue, browser_revenue = _revenue(conn, site, lo, hi)[""]
    leads, browser_sales = counts["lead"], counts["browserSale"]
    sales = _sales(site, counts["sale"], browser_sales)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "steps": [
            {"name": "clicks", "count": clicks},
            {"name": "leads", "count": leads, **_rates(leads, clicks)},
            {"name": "sales", "count": sales, **_rates(sales, leads)},
        ],
        "revenue": revenue,
        "browserSales": browser_sales,
        "browserRevenue": browser_revenue,
        "countsBrowserRevenue": site.settings.count_browser_revenue,
    }


def _outcome(kind: str, source: str) -> str:
    # A sale a browser reported is counted apart from the sales back ends confirmed.
    return "browserSale" if kind == "sale" and source in store.BROWSER_SOURCES else kind


def _sales(site: Site, confirmed: int, browser: int) -> int:
    return confirmed + (browser if site.settings.count_browser_revenue else 0)


def _rates(count: int, previous: int) -> dict[str, float | None]:
    if not previous:
        return {"conversionRate": None, "dropoffRate": None}
    rate = round(count / previous, 4)
    return {"conversionRate": rate, "dropoffRate": round(1 - rate, 4)}


Totals = dict[str, int]


def _revenue(
    conn: Any, site: Site, lo: str, hi: str, by_day: bool = False
) -> dict[str, tuple[Totals, Totals]]:
    """Per day ("" when not ``by_day``): (revenue, browser revenue), each per currency.

    ``revenue`` holds the confirmed values, and the browser ones too where the site counts
    them; ``browser revenue`` always holds the browser ones.
    """
    c = store.conversions
    days = [func.substr(c.c.occurred_at, 1, 10)] if by_day else []
    net = c.c.value - c.c.refunded
    query = (
        select(
            *days,
            c.c.currency,
            c.c.source,
            func.sum(net // _SPLIT),
            func.sum(net % _SPLIT),
        )
        .where(
            c.c.site_id == site.id,
            c.c.occurred_at >= lo,
            c.c.occurred_at < hi,
            c.c.kind == "sale",
            c.c.currency.is_not(None),
            c.c.value.is_not(None),
            _counted(site),
        )
        .group_by(*days, c.c.currency, c.c.source)
    )
    out: dict[str, tuple[Totals, Totals]] = {}
    for row in conn.execute(query).all():
        d, (currency, source, high, low) = (row[0], row[1:]) if by_day else ("", row)
        # PostgreSQL sums bigint as numeric (Decimal); int() of either is exact.
        total = int(high) * _SPLIT + int(low)
        revenue, browser_revenue = out.setdefault(d, ({}, {}))
        browser = source in store.BROWSER_SOURCES
        if browser:
            browser_revenue[currency] = browser_revenue.get(currency, 0) + total
        if not browser or site.settings.count_browser_revenue:
            revenue[currency] = revenue.get(currency, 0) + total
    if not by_day:
        out.setdefault("", ({}, {}))
    return out


def timeseries(
    engine: Engine, site: Site, start: date, end: date, exclude_bots: bool = False
) -> dict[str, Any]:
    """Per UTC day in [start, end]: clicks, leads, sales and revenue per currency.

    Like :func:`funnel`, browser-reported sales and values are also shown apart per day.
    """
    lo, hi = _range(start, end)
    s, c = store.sessions, store.conversions
    s_day, c_day = func.substr(s.c.created_at, 1, 10), func.substr(c.c.occurred_at, 1, 10)
    with engine.connect() as conn:
        clicks = dict(
            conn.execute(
                select(s_day, func.count(func.distinct(s.c.click_id)))
                .where(
                    s.c.site_id == site.id,
                    _human(exclude_bots),
                    s.c.click_id.is_not(None),
                    s.c.created_at >= lo,
                    s.c.created_at < hi,
                )
                .group_by(s_day)
            ).all()
        )
        kinds: Counter[tuple[str, str]] = Counter()
        for d, kind, source, n in conn.execute(
            select(c_day, c.c.kind, c.c.source, func.count())
            .where(
                and_(
                    c.c.site_id == site.id,
                    c.c.occurred_at >= lo,
                    c.c.occurred_at < hi,
                    c.c.kind.in_(("lead", "sale")),
                    _counted(site),
                )
            )
            .group_by(c_day, c.c.kind, c.c.source)
        ).all():
            kinds[d, _outcome(kind, source)] += n
        revenue = _revenue(conn, site, lo, hi, by_day=True)
    days = []
    day = start
    while day <= end:
        key = day.isoformat()
        browser_sales = kinds[key, "browserSale"]
        counted, browser_revenue = revenue.get(key, ({}, {}))
        days.append(
            {
                "date": key,
                "clicks": clicks.get(key, 0),
                "leads": kinds[key, "lead"],
                "sales": _sales(site, kinds[key, "sale"], browser_sales),
                "revenue": counted,
                "browserSales": browser_sales,
                "browserRevenue": browser_revenue,
            }
        )
        day += timedelta(days=1)
    return {"start": start.isoformat(), "end": end.isoformat(), "data": days}


def totals(
    engine: Engine, site: Site, lo: str, hi: str, by_day: bool = False, exclude_bots: bool = False
) -> dict[str, Any]:
    """Clicks, leads, sales and revenue in the half-open UTC range [lo, hi), by the rules above.

    ``lo``/``hi`` are store timestamps (any prefix of one sorts correctly). Keyed by UTC
    day (``YYYY-MM-DD``) with ``by_day``, else by ``""``; days without data are absent.
    Each value: ``clicks``, ``leads``, ``sales`` (browser sales only where the site counts
    them), ``browserSales``, ``revenue`` and ``browserRevenue`` per currency. For the
    Dub-compatible reports (:mod:`firsttag.analytics.dub_reports`), whose ranges are times.
    """
    s, c = store.sessions, store.conversions
    s_day = [func.substr(s.c.created_at, 1, 10)] if by_day else []
    c_day = [func.substr(c.c.occurred_at, 1, 10)] if by_day else []
    out: dict[str, dict[str, Any]] = {}

    def bucket(d: str) -> dict[str, Any]:
        return out.setdefault(
            d,
            {
                "clicks": 0,
                "leads": 0,
                "sales": 0,
                "browserSales": 0,
                "revenue": {},
                "browserRevenue": {},
            },
        )

    with engine.connect() as conn:
        for row in conn.execute(
            select(*s_day, func.count(func.distinct(s.c.click_id)))
            .where(
                s.c.site_id == site.id,
                _human(exclude_bots),
                s.c.click_id.is_not(None),
                s.c.created_at >= lo,
                s.c.created_at < hi,
            )
            .group_by(*s_day)
        ).all():
            bucket(row[0] if by_day else "")["clicks"] = row[-1]
        for row in conn.execute(
            select(*c_day, c.c.kind, c.c.source, func.count())
            .where(
                c.c.site_id == site.id,
                c.c.occurred_at >= lo,
                c.c.occurred_at < hi,
                c.c.kind.in_(("lead", "sale")),
                _counted(site),
            )
            .group_by(*c_day, c.c.kind, c.c.source)
        ).all():
            d, (kind, source, n) = (row[0], row[1:]) if by_day else ("", row)
            b = bucket(d)
            outcome = _outcome(kind, source)
            if outcome == "browserSale":
                b["browserSales"] += n
                b["sales"] += n if site.settings.count_browser_revenue else 0
            else:
                b[f"{outcome}s"] += n
        for d, (revenue, browser_revenue) in _revenue(conn, site, lo, hi, by_day).items():
            if revenue or browser_revenue or not by_day:
                b = bucket(d)
                b["revenue"], b["browserRevenue"] = revenue, browser_revenue
    if not by_day:
        bucket("")
    return out


def by_name(
    engine: Engine, site: Site, lo: str, hi: str, kind: str
) -> list[tuple[str, int, dict[str, int]]]:
    """Leads or sales (``kind``) in [lo, hi) per event name: (name, count, revenue per currency).

    Counted by the rules above: counting statuses, and browser sales only where the site
    counts them.
    """
    c = store.conversions
    sources = (
        true()
        if kind != "sale" or site.settings.count_browser_revenue
        else c.c.source.not_in(store.BROWSER_SOURCES)
    )
    net = c.c.value - c.c.refunded
    query = (
        select(
            c.c.name, c.c.currency, func.count(), func.sum(net // _SPLIT), func.sum(net % _SPLIT)
        )
        .where(
            c.c.site_id == site.id,
            c.c.occurred_at >= lo,
            c.c.occurred_at < hi,
            c.c.kind == kind,
            _counted(site),
            sources,
        )
        .group_by(c.c.name, c.c.currency)
    )
    names: dict[str, tuple[int, dict[str, int]]] = {}
    with engine.connect() as conn:
        for name, currency, n, high, low in conn.execute(query).all():
            count, revenue = names.get(name, (0, {}))
            if currency is not None and high is not None:
                revenue[currency] = revenue.get(currency, 0) + int(high) * _SPLIT + int(low)
            names[name] = (count + n, revenue)
    return sorted(((k, n, r) for k, (n, r) in names.items()), key=lambda x: (-x[1], x[0]))
def session_count(
    engine: Engine, site: Site, start: date, end: date, exclude_bots: bool = False
) -> int:
    """Sessions (visits, with or without a click) that began in [start, end] (UTC days)."""
    lo, hi = _range(start, end)
    s = store.sessions
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                s.c.site_id == site.id,
                _human(exclude_bots),
                s.c.created_at >= lo,
                s.c.created_at < hi,
            )
        ).scalar_one()
