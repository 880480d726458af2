"""Dub's ``GET /events`` and ``GET /analytics``, answered from firsttag's store.

The shapes are those of Dub's SDKs (``dub`` 0.39.0 on PyPI, 0.73.5 on npm); the numbers
come from :mod:`firsttag.analytics.queries`, so they follow the one counting rule
(counting order statuses; browser-reported sales apart unless the site counts them).

What firsttag cannot answer it refuses by name (:class:`BadQuery`, a 400 naming the
parameter) rather than answering with numbers that ignore the question: a ``groupBy``
it has no data for (countries, devices, links, …), a filter on such data, a time zone
other than UTC. firsttag keeps no short links, so the ``link`` every Dub lead and sale
event carries is a placeholder (empty strings, no link ID); the click is the visit that
carried the click ID, where one was stored.

Pure: no Flask. :mod:`firsttag.web.dub_events` and :mod:`firsttag.web.dub_analytics`
read the query string and answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from firsttag import store
from firsttag.analytics import queries
from firsttag.customer_ids import customer_id as public_customer_id
from firsttag.sites import Site

#: Dub's ``interval`` values; ``24h`` is Dub's default.
INTERVALS = ("24h", "7d", "30d", "90d", "1y", "mtd", "qtd", "ytd", "all")
#: The ``groupBy`` values firsttag answers (Dub has more; the others are refused by name).
GROUPINGS = ("count", "timeseries", "event_names")
#: Dub's ``event`` values for analytics; ``composite`` is all three.
ANALYTICS_EVENTS = ("clicks", "leads", "sales", "composite")
#: Dub's ``event`` values that ``GET /events`` lists here (Dub's default is clicks, which
#: firsttag counts but does not list one by one).
LISTED_EVENTS = ("leads", "sales")
#: Query parameters of Dub's that filter or group by data firsttag does not keep.
UNSUPPORTED_FILTERS = [
    "domain",
    "key",
    "linkId",
    "externalId",
    "tenantId",
    "tagId",
    "tagIds",
    "folderId",
    "partnerTagId",
    "groupId",
    "partnerId",
    "customerId",
    "country",
    "city",
    "region",
    "continent",
    "device",
    "browser",
    "os",
    "trigger",
    "referer",
    "refererUrl",
    "url",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "root",
    "saleType",
    "query",
    "programId",
    "qr",
]
#: Dub's payment processors (an enum in its SDKs); anything else is shown as ``custom``.
PAYMENT_PROCESSORS = [
    "stripe",
    "shopify",
    "polar",
    "paddle",
    "apple",
    "revenuecat",
    "lemonsqueezy",
    "dub",
    "custom",
]
#: The earliest time firsttag stores (bounds.py), where ``interval=all`` starts.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class BadQuery(ValueError):
    """A query parameter firsttag refuses: ``field`` names it, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Range:
    """A half-open UTC range [start, end) of store timestamps."""

    start: datetime
    end: datetime

    @property
    def lo(self) -> str:
        """The start as a store timestamp."""
        return store.format_time(self.start)

    @property
    def hi(self) -> str:
        """The end as a store timestamp."""
        return store.format_time(self.end)


def _moment(field: str, raw: str, end: bool) -> datetime:
    try:
        if len(raw) == 10:  # a date: the whole day, as Dub reads one
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(field, "must be a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_range(args: Mapping[str, str], now: datetime) -> Range:
    """Dub's ``interval``/``start``/``end``: ``start`` wins over ``interval`` (default 24h)."""
    timezone = args.get("timezone")
    if timezone and timezone not in ("UTC", "Etc/UTC", "GMT"):
        raise BadQuery("timezone", "firsttag reports in UTC only")
    end = _moment("end", args["end"], True) if args.get("end") else now
    if args.get("start"):
        start = _moment("start", args["start"], False)
    else:
        interval = args.get("interval") or "24h"
        if interval not in INTERVALS:
            raise BadQuery("interval", f"must be one of {', '.join(INTERVALS)}")
        start = _interval_start(interval, end)
    start, end = max(start, EPOCH), max(end, EPOCH)
    if start > end:
        raise BadQuery("start", "must not be after end")
    return Range(start, end)


def _interval_start(interval: str, end: datetime) -> datetime:
    days = {"24h": 1, "7d": 7, "30d": 30, "90d": 90, "1y": 365}.get(interval)
    if days:
        return end - timedelta(days=days)
    midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "mtd":
        return midnight.replace(day=1)
    if interval == "qtd":
        return midnight.replace(month=(end.month - 1) // 3 * 3 + 1, day=1)
    if interval == "ytd":
        return midnight.replace(month=1, day=1)
    return EPOCH  # all


def refuse_unsupported(args: Mapping[str, str]) -> None:
    """A 400 naming the first Dub filter firsttag has no data for."""
    for name in UNSUPPORTED_FILTERS:
        if args.get(name) not in (None, ""):
            raise BadQuery(name, "firsttag keeps no data to filter on this")


def _sale_amount(revenue: Mapping[str, int], currency: str | None) -> int:
    """Dub's single ``saleAmount`` (minor units) from revenue per currency.

    Dub converts every sale to one currency; firsttag never adds amounts in different
    currencies, so the caller picks one with ``currency`` when there are several.
    """
    if currency is not None:
        return revenue.get(currency, 0)
    if len(revenue) > 1:
        raise BadQuery(
            "currency",
            f"sales are in {', '.join(sorted(revenue))}: pass currency to pick one",
        )
    return next(iter(revenue.values()), 0)


def _currency_arg(args: Mapping[str, str]) -> str | None:
    raw = args.get("currency")
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isalpha() and len(raw) == 3):
        raise BadQuery("currency", "must be an ISO 4217 code")
    return raw.upper()


def _metrics(event: str, b: Mapping[str, Any], currency: str | None) -> dict[str, Any]:
    shown = ("clicks", "leads", "sales") if event == "composite" else (event,)
    out: dict[str, Any] = {name: b[name] for name in shown}
    if "sales" in shown:
        out["saleAmount"] = _sale_amount(b["revenue"], currency)
        # firsttag's extras (Dub's SDKs ignore unknown fields): money per currency, and
        # what browsers reported, kept apart from confirmed revenue.
        out.update(
            revenue=b["revenue"], browserSales=b["browserSales"], browserRevenue=b["browserRevenue"]
        )
    return out


def analytics(engine: Engine, site: Site, args: Mapping[str, str], now: datetime) -> Any:
    """Dub's ``GET /analytics`` for ``event`` and ``groupBy`` (default: clicks, count)."""
    event = args.get("event") or "clicks"
    if event not in ANALYTICS_EVENTS:
        raise BadQuery("event", f"must be one of {', '.join(ANALYTICS_EVENTS)}")
    group_by = args.get("groupBy") or "count"
    if group_by not in GROUPINGS:
        raise BadQuery(
            "groupBy",
            f"firsttag answers groupBy={', '.join(GROUPINGS)}; it keeps no data for {group_by!r}",
        )
    refuse_unsupported(args)
    currency = _currency_arg(args)
    span = time_range(args, now)
    if group_by == "count":
        found = queries.totals(engine, site, span.lo, span.hi)
        return _metrics(event, found[""], currency)
    if group_by == "timeseries":
        days = queries.totals(engine, site, span.lo, span.hi, by_day=True)
        empty = {"clicks": 0, "leads": 0, "sales": 0, "browserSales": 0}
        empty.update(revenue={}, browserRevenue={})
        out = []
        day = span.start.date()
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < span.end:
            key = day.isoformat()
            out.append(
                {"start": f"{key}T00:00:00.000Z", **_metrics(event, days.get(key, empty), currency)}
            )
            day += timedelta(days=1)
        return out
    if event not in ("leads", "sales"):
        raise BadQuery("event", "groupBy=event_names counts leads or sales")
    kind = event[:-1]
    rows = []
    for name, count, revenue in queries.by_name(engine, site, span.lo, span.hi, kind):
        row: dict[str, Any] = {"eventName": name, event: count}
        if kind == "sale":
            row.update(saleAmount=_sale_amount(revenue, currency), revenue=revenue)
        rows.append(row)
    return rows


# -- GET /events ----------------------------------------------------------------------------


def _page_args(args: Mapping[str, str]) -> tuple[int, int, bool]:
    def number(name: str, default: int, high: int) -> int:
        raw = args.get(name)
        if raw in (None, ""):
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and 1 <= int(raw) <= high):
            raise BadQuery(name, f"must be an integer from 1 to {high}")
        return int(raw)

    order = args.get("sortOrder") or args.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise BadQuery("sortOrder", "must be asc or desc")
    if (args.get("sortBy") or "timestamp") != "timestamp":
        raise BadQuery("sortBy", "must be timestamp")
    return number("page", 1, 1_000_000), number("limit", 100, 1000), order == "asc"


def events(engine: Engine, site: Site, args: Mapping[str, str], now: datetime) -> list[Any]:
    """Dub's ``GET /events`` for ``event=leads`` or ``sales``: one page, newest first.

    The events a report counts (:mod:`firsttag.analytics.queries`), each with its
    customer, its click (the first visit that carried its click ID) and a placeholder link.
    """
    event = args.get("event") or "clicks"
    if event not in LISTED_EVENTS:
        raise BadQuery(
            "event", "firsttag lists leads and sales; clicks are counted by GET /analytics"
        )
    refuse_unsupported(args)
    page, limit, ascending = _page_args(args)
    span = time_range(args, now)
    c, k = store.conversions, store.customers
    kind = event[:-1]
    where = [
        c.c.site_id == site.id,
        c.c.kind == kind,
        c.c.occurred_at >= span.lo,
        c.c.occurred_at < span.hi,
        queries.counted(site),
    ]
    if kind == "sale" and not site.settings.count_browser_revenue:
        where.append(c.c.source.not_in(store.BROWSER_SOURCES))
    if args.get("eventName"):
        where.append(c.c.name.in_(args["eventName"].split(",")))
    order = (
        (c.c.occurred_at.asc(), c.c.id.asc())
        if ascending
        else (
            c.c.occurred_at.desc(),
            c.c.id.desc(),
        )
    )
    query = (
        select(
            c,
            k.c.public_id,
            k.c.name.label("customer_name"),
            k.c.email,
            k.c.avatar,
            k.c.created_at.label("customer_created_at"),
        )
        .select_from(
            c.outerjoin(k, (k.c.site_id == c.c.site_id) & (k.c.external_id == c.c.customer_id))
        )
        .where(*where)
        .order_by(*order)
        .limit(limit)
        .offset((page - 1) * limit)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query).mappings())
        clicks = _first_visits(conn, site.id, {r["click_id"] for r in rows if r["click_id"]})
    return [_event(site, r, clicks.get(r["click_id"])) for r in rows]


def _first_visits(conn: Any, site_id: str, click_ids: set[str]) -> dict[str, Mapping[str, Any]]:
    if not click_ids:
        return {}
    s = store.sessions
    first = (
        select(s.c.click_id, func.min(s.c.created_at).label("at"))
        .where(s.c.site_id == site_id, s.c.click_id.in_(click_ids))
        .group_by(s.c.click_id)
        .subquery()
    )
    rows = conn.execute(
        select(s)
        .join(first, (s.c.click_id == first.c.click_id) & (s.c.created_at == first.c.at))
        .where(s.c.site_id == site_id)
    ).mappings()
    return {r["click_id"]: r for r in rows}


def dub_time(stored: str | None) -> str:
    """A store timestamp as Dub writes times (JavaScript's ISO form, milliseconds)."""
    return (stored[:23] + "Z") if stored and len(stored) == 27 else (stored or "")


def _click(click_id: str | None, visit: Mapping[str, Any] | None, at: str) -> dict[str, Any]:
    # Geography, device and IP are not kept: empty strings, as the SDKs require strings.
    referrer = (visit or {}).get("referrer") or ""
    return {
        "id": click_id or "",
        "timestamp": dub_time(visit["created_at"]) if visit else at,
        "url": (visit or {}).get("url") or "",
        "country": "",
        "city": "",
        "region": "",
        "continent": "",
        "device": "",
        "browser": "",
        "os": "",
        "referer": _host(referrer),
        "refererUrl": referrer,
        "qr": False,
        "ip": "",
        "ua": (visit or {}).get("user_agent"),
        "trigger": None,
    }


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0] if url else "(direct)"


def _link(site: Site, at: str) -> dict[str, Any]:
    # firsttag keeps no short links; every field Dub's SDKs require, nothing invented.
    nulls = [
        "externalId",
        "tenantId",
        "programId",
        "partnerId",
        "expiresAt",
        "expiredUrl",
        "disabledAt",
        "password",
        "title",
        "description",
        "image",
        "video",
        "ios",
        "android",
        "geo",
        "tags",
        "folderId",
        "comments",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "testStartedAt",
        "testCompletedAt",
        "userId",
        "lastClicked",
        "tagId",
        "testVariants",
    ]
    link: dict[str, Any] = dict.fromkeys(nulls)
    link.update(
        id="",
        domain="",
        key="",
        url="",
        shortLink="",
        qrCode="",
        trackConversion=True,
        archived=False,
        proxy=False,
        rewrite=False,
        doIndex=False,
        publicStats=False,
        workspaceId=site.id,
        projectId=site.id,
        webhookIds=[],
        createdAt=at,
        updatedAt=at,
    )
    return link


def _event(site: Site, row: Mapping[str, Any], visit: Mapping[str, Any] | None) -> dict[str, Any]:
    at = dub_time(row["occurred_at"])
    click = _click(row["click_id"], visit, at)
    external_id = row["customer_id"] or ""
    customer = {
        # Erased customers' events keep no customer: empty IDs (docs/privacy.md).
        "id": row["public_id"] or (public_customer_id(site.id, external_id) if external_id else ""),
        "externalId": external_id,
        "name": row["customer_name"],
        "email": row["email"],
        "avatar": row["avatar"],
        "createdAt": dub_time(row["customer_created_at"]) or at,
    }
    out: dict[str, Any] = {
        "event": row["kind"],
        "timestamp": at,
        "eventId": f"evt_{row['id']}",
        "eventName": row["name"],
        "click": click,
        "link": _link(site, at),
        "customer": customer,
        # Dub's deprecated flat fields, named as Dub still sends them (snake_case).
        "click_id": click["id"],
        "link_id": "",
        "domain": "",
        "key": "",
        "url": click["url"],
        "continent": "",
        "country": "",
        "city": "",
        "device": "",
        "browser": "",
        "os": "",
        "qr": 0,
        "ip": "",
        "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
    }
    if row["kind"] == "sale":
        details = json.loads(row["details"]) if row["details"] else {}
        processor = details.get("paymentProcessor") or "custom"
        amount = (row["value"] or 0) - (row["refunded"] or 0)
        out.update(
            saleAmount=amount,
            invoice_id=row["order_id"] or "",
            payment_processor=processor,
            sale={
                "amount": amount,
                "currency": (row["currency"] or "").lower(),
                "invoiceId": row["order_id"],
                "paymentProcessor": processor if processor in PAYMENT_PROCESSORS else "custom",
            },
        )
    return out
