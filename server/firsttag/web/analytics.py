"""``GET /api/v1/analytics/…``: the funnel and time series of :mod:`firsttag.analytics.queries`.

Secret key only; the date range is read and bounded here, the counting rules live there.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Blueprint, request

from firsttag.analytics.queries import funnel, timeseries
from firsttag.web.context import services
from firsttag.web.errors import field_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import secret_site

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/analytics")

DEFAULT_DAYS = 30
MAX_DAYS = 366


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


@bp.get("/funnel")
def funnel_view() -> Any:
    """``GET /api/v1/analytics/funnel?start=YYYY-MM-DD&end=YYYY-MM-DD`` (default: 30 days)."""
    site = secret_site()
    charge_site("reads", site)
    return funnel(services().engine, site, *_dates(), exclude_bots=_exclude_bots())


@bp.get("/timeseries")
def timeseries_view() -> Any:
    """``GET /api/v1/analytics/timeseries?start=…&end=…``: one entry per day."""
    site = secret_site()
    charge_site("reads", site)
    return timeseries(services().engine, site, *_dates(), exclude_bots=_exclude_bots())
