"""Reports by where visits came from: sessions, leads, sales and revenue per group.

Sessions are grouped by their own touch (channel, source, … parsed by
:mod:`firsttag.touches`); conversions by the touch the chosen attribution ``model`` credits
(the session named by the conversion's ``first_touch_session_id``,
``last_touch_session_id`` or ``last_non_direct_session_id``, frozen when it was stored).
``attributionModel`` groups conversions by how they were attributed (``direct``,
``assisted``, ``none``); sessions have no attribution, so their counts are null then.

Money follows :mod:`firsttag.analytics.queries`: confirmed revenue and browser-reported
values apart, per currency, summed in two parts so no SUM can overflow.

Pure: no Flask. Every function takes (engine, site, start, end, filters, group) and returns
plain dicts, for the API and for a dashboard alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from firsttag import store
from firsttag.analytics.attribution import MODELS
from firsttag.sites import Site

#: API name of a dimension → the ``sessions`` column it reads.
DIMENSIONS = {
    "channel": "channel",
    "source": "source",
    "medium": "medium",
    "campaign": "campaign",
    "landingPage": "landing_page",
    "device": "device",
}
#: Everything a report may be grouped or filtered by.
GROUPS = (*DIMENSIONS, "attributionModel")
#: The default model: the one most ad tools report.
DEFAULT_MODEL = "lastNonDirect"
#: A filter value that matches an unknown (null) value.
NONE = "(none)"
#: What rows may be sorted by, besides ``revenue.<CURRENCY>``.
SORTS = (
    "sessions",
    "clicks",
    "leads",
    "sales",
    "browserSales",
    "conversionRate",
    "leadRate",
    "group",
)

_SPLIT = 2**24  # as in queries.py: sums in two parts below and above 2**24

Filters = Mapping[str, Sequence[str]]


def _range(start: date, end: date) -> tuple[str, str]:
    return f"{start.isoformat()}T00:00:00", f"{(end + timedelta(days=1)).isoformat()}T00:00:00"


def _match(column: Any, values: Sequence[str]) -> Any:
    known = [v for v in values if v != NONE]
    parts = [column.in_(known)] if known else []
    if NONE in values:
        parts.append(column.is_(None))
    return or_(*parts)


def totals(
    engine: Engine,
    site: Site,
    start: date,
    end: date,
    filters: Filters,
    group: str,
    model: str = DEFAULT_MODEL,
    exclude_bots: bool = False,
    by_day: bool = False,
) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Per (UTC day or "", group value): the counts and money of that group.

    Each value has ``sessions`` (None when grouped or filtered by ``attributionModel``),
    ``clicks`` (distinct Dub click IDs), ``leads``, ``sales``, ``browserSales``,
    ``revenue`` and ``browserRevenue`` (per currency), counted as the funnel counts them.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}")
    lo, hi = _range(start, end)
    s, c = store.sessions, store.conversions
    out: dict[tuple[str, str | None], dict[str, Any]] = {}

    def cell(day: str, key: str | None) -> dict[str, Any]:
        return out.setdefault(
            (day, key),
            {
                "sessions": 0 if sessions_apply else None,
                "clicks": 0 if sessions_apply else None,
                "leads": 0,
                "sales": 0,
                "browserSales": 0,
                "revenue": {},
                "browserRevenue": {},
            },
        )

    sessions_apply = group != "attributionModel" and "attributionModel" not in filters
    with engine.connect() as conn:
        if sessions_apply:
            s_day = [func.substr(s.c.created_at, 1, 10)] if by_day else []
            key = s.c[DIMENSIONS[group]]
            where = [s.c.site_id == site.id, s.c.created_at >= lo, s.c.created_at < hi]
            if exclude_bots:
                where.append(s.c.bot.is_(False))
            where += [_match(s.c[DIMENSIONS[d]], v) for d, v in filters.items()]
            query = (
                select(*s_day, key, func.count(), func.count(func.distinct(s.c.click_id)))
                .where(*where)
                .group_by(*s_day, key)
            )
            for found in conn.execute(query).all():
                day, (value, n, clicks) = (found[0], found[1:]) if by_day else ("", found)
                row = cell(day, value)
                row["sessions"], row["clicks"] = n, clicks

        # The credited session of each conversion, under the chosen model.
        t = s.alias("credited")
        joined = c.outerjoin(
            t, and_(t.c.site_id == c.c.site_id, t.c.session_id == c.c[MODELS[model]])
        )
        c_day = [func.substr(c.c.occurred_at, 1, 10)] if by_day else []
        key = c.c.attribution_type if group == "attributionModel" else t.c[DIMENSIONS[group]]
        where = [
            c.c.site_id == site.id,
            c.c.occurred_at >= lo,
            c.c.occurred_at < hi,
            c.c.kind.in_(("lead", "sale")),
            or_(c.c.status.is_(None), c.c.status.in_(site.settings.counting_statuses)),
        ]
        for d, values in filters.items():
            column = c.c.attribution_type if d == "attributionModel" else t.c[DIMENSIONS[d]]
            where.append(_match(column, values))
        net = c.c.value - c.c.refunded
        query = (
            select(
                *c_day,
                key,
                c.c.kind,
                c.c.source,
                c.c.currency,
                func.count(),
                func.sum(net // _SPLIT),
                func.sum(net % _SPLIT),
            )
            .select_from(joined)
            .where(*where)
            .group_by(*c_day, key, c.c.kind, c.c.source, c.c.currency)
        )
        for found in conn.execute(query).all():
            day, found = (found[0], found[1:]) if by_day else ("", found)
            value, kind, source, currency, n, high, low = found
            row = cell(day, value)
            browser = source in store.BROWSER_SOURCES
            if kind == "lead":
                row["leads"] += n
                continue
            row["browserSales" if browser else "sales"] += n
            if browser and site.settings.count_browser_revenue:
                row["sales"] += n
            if currency is None or high is None:
                continue
            # PostgreSQL sums bigint as numeric (Decimal); int() of either is exact.
            total = int(high) * _SPLIT + int(low)
            if browser:
                row["browserRevenue"][currency] = row["browserRevenue"].get(currency, 0) + total
            if not browser or site.settings.count_browser_revenue:
                row["revenue"][currency] = row["revenue"].get(currency, 0) + total
    return out


def _rate(count: int, sessions: int | None) -> float | None:
    return round(count / sessions, 4) if sessions else None


def _row(key: str | None, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "group": key,
        **values,
        "conversionRate": _rate(values["sales"], values["sessions"]),
        "leadRate": _rate(values["leads"], values["sessions"]),
    }


def _sort_key(sort: str) -> Any:
    if sort.startswith("revenue."):
        currency = sort.removeprefix("revenue.")
        return lambda r: r["revenue"].get(currency, 0)
    if sort == "group":
        return lambda r: (r["group"] is None, r["group"] or "")
    return lambda r: r[sort] if r[sort] is not None else -1


def breakdown(
    engine: Engine,
    site: Site,
    start: date,
    end: date,
    filters: Filters,
    group: str,
    model: str = DEFAULT_MODEL,
    sort: str = "sessions",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
    exclude_bots: bool = False,
) -> dict[str, Any]:
    """One row per group value: sessions, clicks, leads, sales, revenue, rates; sorted, paged.

    ``conversionRate`` is sales per session and ``leadRate`` leads per session (None
    without sessions). Rows tie-break on the group value, so pages are stable.
    """
    cells = totals(engine, site, start, end, filters, group, model, exclude_bots)
    rows = [_row(key, values) for (_, key), values in cells.items()]
    rows.sort(key=lambda r: (r["group"] is None, r["group"] or ""))
    rows.sort(key=_sort_key(sort), reverse=descending and sort != "group")
    if sort == "group" and descending:
        rows.reverse()
    page = rows[offset : offset + limit]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "groupBy": group,
        "model": model,
        "filters": {k: list(v) for k, v in filters.items()},
        "sort": sort,
        "order": "desc" if descending else "asc",
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "nextOffset": offset + limit if offset + limit < len(rows) else None,
        "countsBrowserRevenue": site.settings.count_browser_revenue,
        "data": page,
    }


def grouped_funnel(
    engine: Engine,
    site: Site,
    start: date,
    end: date,
    filters: Filters,
    group: str,
    model: str = DEFAULT_MODEL,
    exclude_bots: bool = False,
) -> dict[str, Any]:
    """The funnel (sessions → leads → sales) of each group, most sessions first."""
    cells = totals(engine, site, start, end, filters, group, model, exclude_bots)
    groups = []
    for (_, key), v in cells.items():
        steps = [
            {"name": "sessions", "count": v["sessions"]},
            {"name": "leads", "count": v["leads"], **_rates(v["leads"], v["sessions"])},
            {"name": "sales", "count": v["sales"], **_rates(v["sales"], v["leads"])},
        ]
        groups.append(
            {
                "group": key,
                "clicks": v["clicks"],
                "steps": steps,
                "revenue": v["revenue"],
                "browserSales": v["browserSales"],
                "browserRevenue": v["browserRevenue"],
            }
        )
    groups.sort(key=lambda g: (g["group"] is None, g["group"] or ""))
    groups.sort(key=lambda g: g["steps"][0]["count"] or 0, reverse=True)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "groupBy": group,
        "model": model,
        "filters": {k: list(v) for k, v in filters.items()},
        "countsBrowserRevenue": site.settings.count_browser_revenue,
        "groups": groups,
    }


def _rates(count: int, previous: int | None) -> dict[str, float | None]:
    if not previous:
        return {"conversionRate": None, "dropoffRate": None}
    rate = round(count / previous, 4)
    return {"conversionRate": rate, "dropoffRate": round(1 - rate, 4)}


def grouped_timeseries(
    engine: Engine,
    site: Site,
    start: date,
    end: date,
    filters: Filters,
    group: str,
    model: str = DEFAULT_MODEL,
    exclude_bots: bool = False,
) -> dict[str, Any]:
    """Per UTC day in [start, end]: the groups active that day, with their counts and money."""
    cells = totals(engine, site, start, end, filters, group, model, exclude_bots, by_day=True)
    per_day: dict[str, list[dict[str, Any]]] = {}
    for (day, key), values in cells.items():
        per_day.setdefault(day, []).append({"group": key, **values})
    days = []
    day = start
    while day <= end:
        entries = per_day.get(day.isoformat(), [])
        entries.sort(key=lambda g: (g["group"] is None, g["group"] or ""))
        days.append({"date": day.isoformat(), "groups": entries})
        day += timedelta(days=1)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "groupBy": group,
        "model": model,
        "filters": {k: list(v) for k, v in filters.items()},
        "data": days,
    }
