"""Template filters: readable numbers, money in its currency, rates and times.

``{{ 1234567 | number }}`` → ``1,234,567``; ``{{ 123456 | money("EUR") }}`` → ``EUR 1,234.56``
(minor units, the currency's own decimals: JPY none, KWD three);
``{{ 0.1234 | percent }}`` → ``12.3%``; ``{{ stored_time | local(zone) }}`` → the instant in
the site's zone (``2026-03-01 11:15 CET``); None prints as an en dash.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from firsttag import money
from firsttag.web.dashboard.blueprint import bp

_NONE = "\u2013"


@bp.app_template_filter("number")
def number(value: int | float | None) -> str:
    """An integer with thousands separators."""
    if value is None:
        return _NONE
    return f"{value:,}"


@bp.app_template_filter("money")
def money_filter(minor_units: int | None, currency: str) -> str:
    """An amount in minor units of ``currency``, with its decimals and thousands separators."""
    if minor_units is None:
        return _NONE
    try:
        places = money.exponent(currency)
    except ValueError:
        places = 2
    amount = Decimal(minor_units).scaleb(-places)
    return f"{currency} {amount:,.{places}f}"


@bp.app_template_filter("percent")
def percent(rate: float | None) -> str:
    """A rate (0.1234) as a percentage (12.3%)."""
    if rate is None:
        return _NONE
    return f"{rate * 100:.1f}%"


@bp.app_template_filter("local")
def local_time(timestamp: str | None, zone: str, seconds: bool = False) -> str:
    """A store timestamp (UTC, ISO 8601) as wall-clock time in ``zone``, with its abbreviation.

    Minutes by default (lists); ``seconds=True`` for a detail page. A value that does not
    parse is shown as stored rather than failing the page.
    """
    if not timestamp:
        return _NONE
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    shown = moment.astimezone(ZoneInfo(zone))
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
