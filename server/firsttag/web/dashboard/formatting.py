"""Template filters: readable numbers, money in its currency, rates and times.

``{{ 1234567 | number }}`` → ``1,234,567``; ``{{ 123456 | money("EUR") }}`` → ``EUR 1,234.56``
(minor units, the currency's own decimals: JPY none, KWD three);
``{{ 0.1234 | percent }}`` → ``12.3%``; None prints as an en dash.
"""

from __future__ import annotations

from decimal import Decimal

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
