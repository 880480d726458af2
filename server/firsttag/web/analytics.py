"""``GET /api/v1/analytics/…``: the funnel, time series and breakdown reports.

Secret key only; the date range, ``groupBy``, ``filter``, ``model``, sort and page are read
and bounded here (a bad one is a 400 naming it); the counting rules live in
:mod:`firsttag.analytics.queries` and :mod:`firsttag.analytics.breakdown`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Blueprint, request

from firsttag.analytics.attribution import MODELS
from firsttag.analytics.breakdown import (
    DEFAULT_MODEL,
    GROUPS,
    SORTS,
    breakdown,
    grouped_funnel,
    grouped_timeseries,
)
from firsttag.analytics.queries import funnel, timeseries
from firsttag.web.context import services
from firsttag.web.errors import field_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import secret_site

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/analytics")

DEFAULT_DAYS = 30
MAX_DAYS = 366
#: Rows per breakdown page: the default and the most one page may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: The most ``filter`` arguments one request may carry.
MAX_FILTERS = 20


def _exclude_bots() -> bool:
    return request.args.get("excludeBots") in ("1", "true")


def _dates() -> tuple[date, date]:
    today = date.today()
    end = _date_arg("end", today)
    start = _date_arg("start", end - timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        raise field_error("start", "must not be after end")
    if (end - start).days >= MAX_DAYS:
        raise field_error("start", f"the range may span at most {MAX_DAYS} days")
    return start, end


def _date_arg(name: str, default: date) -> date:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        # fromisoformat also reads 20260101 and 2026-W01-1; the API documents YYYY-MM-DD.
        if not (raw.isascii() and len(raw) == 10 and raw[4] == raw[7] == "-"):
            raise ValueError(raw)
        value = date.fromisoformat(raw)
    except ValueError:
        raise field_error(name, "must be a date as YYYY-MM-DD") from None
    if not date(2000, 1, 1) <= value <= date(2999, 12, 31):
        raise field_error(name, "must be between 2000-01-01 and 2999-12-31")
    return value


def _choice(name: str, allowed: tuple[str, ...] | list[str], default: str | None) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise field_error(name, f"must be one of {', '.join(allowed)}")
    return raw


def _group(required: bool = False) -> str | None:
    group = _choice("groupBy", GROUPS, None)
    if group is None and required:
        raise field_error("groupBy", f"is required: one of {', '.join(GROUPS)}")
    return group


def _model() -> str:
    return _choice("model", list(MODELS), DEFAULT_MODEL) or DEFAULT_MODEL


def _filters() -> dict[str, list[str]]:
    """``filter=dimension:value`` (repeatable): values of one dimension OR, dimensions AND."""
    raw = request.args.getlist("filter")
    if len(raw) > MAX_FILTERS:
        raise field_error("filter", f"at most {MAX_FILTERS} filters")
    out: dict[str, list[str]] = {}
    for item in raw:
        dimension, sep, value = item.partition(":")
        if not sep or dimension not in GROUPS:
            raise field_error(
                "filter", f"must be dimension:value, dimension one of {', '.join(GROUPS)}"
            )
        if not value or len(value) > 1000:
            raise field_error("filter", "a value must be 1 to 1000 characters")
        out.setdefault(dimension, []).append(value)
    return out


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise field_error(name, f"must be a whole number from {low} to {high}")
    return int(raw)


def _sort() -> str:
    raw = request.args.get("sort") or "sessions"
    if raw in SORTS:
        return raw
    currency = raw.removeprefix("revenue.")
    if (
        raw.startswith("revenue.")
        and len(currency) == 3
        and currency.isascii()
        and currency.isupper()
    ):
        return raw
    raise field_error("sort", f"must be one of {', '.join(SORTS)} or revenue.<CURRENCY>")


@bp.get("/funnel")
def funnel_view() -> Any:
    """``GET /api/v1/analytics/funnel?start=YYYY-MM-DD&end=YYYY-MM-DD`` (default: 30 days).

    With ``groupBy`` (and optional ``filter``, ``model``): one funnel per group.
    """
    site = secret_site()
    charge_site("reads", site)
    dates, group, filters, model = _dates(), _group(), _filters(), _model()
    if group is None:
        return funnel(services().engine, site, *dates, exclude_bots=_exclude_bots())
    return grouped_funnel(
        services().engine, site, *dates, filters, group, model, exclude_bots=_exclude_bots()
    )


@bp.get("/timeseries")
def timeseries_view() -> Any:
    """``GET /api/v1/analytics/timeseries?start=…&end=…``: one entry per day.

    With ``groupBy`` (and optional ``filter``, ``model``): each day lists its groups.
    """
    site = secret_site()
    charge_site("reads", site)
    dates, group, filters, model = _dates(), _group(), _filters(), _model()
    if group is None:
        return timeseries(services().engine, site, *dates, exclude_bots=_exclude_bots())
    return grouped_timeseries(
        services().engine, site, *dates, filters, group, model, exclude_bots=_exclude_bots()
    )


@bp.get("/breakdown")
def breakdown_view() -> Any:
    """``GET /api/v1/analytics/breakdown?groupBy=channel``: one row per group, sorted, paged.

    Also ``start``, ``end``, ``filter=dimension:value`` (repeatable; ``(none)`` matches an
    unknown value), ``model`` (firstTouch, lastTouch, lastNonDirect), ``sort`` (sessions,
    clicks, leads, sales, browserSales, conversionRate, leadRate, group or
    revenue.<CURRENCY>), ``order`` (desc, asc), ``limit`` and ``offset``.
    """
    site = secret_site()
    charge_site("reads", site)
    dates, group, filters, model = _dates(), _group(required=True), _filters(), _model()
    assert group is not None
    sort = _sort()
    order = _choice("order", ("desc", "asc"), "desc")
    return breakdown(
        services().engine,
        site,
        *dates,
        filters,
        group,
        model,
        sort=sort,
        descending=order == "desc",
        offset=_int_arg("offset", 0, 0, 10_000_000),
        limit=_int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        exclude_bots=_exclude_bots(),
    )
