"""The query string of the report pages: the date range and the filters.

Every report page and export reads ``range`` (``today``, ``7d``, ``30d``, ``month``,
``custom`` with ``start``/``end``; see :mod:`firsttag.analytics.periods`) and the filters
(one parameter per dimension, ``?name=Purchase``). Everything is in the URL, so a view can
be shared and the back button returns to the view before.
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from werkzeug.exceptions import BadRequest

from firsttag.analytics import overview
from firsttag.analytics.explore import LIST_FILTERS, TOUCH_FILTERS
from firsttag.analytics.periods import Period, resolve
from firsttag.sites import Site

#: Longest value a filter may have (the longest stored name is 255 characters).
MAX_VALUE = 255


def period(site: Site, default: str = "30d") -> tuple[str, Period]:
    """The range the URL asks for, in the site's zone; a 400 page naming a bad field."""
    try:
        return resolve(
            request.args.get("range", default),
            site.settings.time_zone,
            request.args.get("start"),
            request.args.get("end"),
        )
    except ValueError as err:
        raise BadRequest(str(err)) from None


def filters(allowed: tuple[str, ...]) -> dict[str, str]:
    """The filters of ``allowed`` dimensions present in the URL (empty values ignored)."""
    out = {}
    for key in allowed:
        value = request.args.get(key, "")
        if len(value) > MAX_VALUE:
            raise BadRequest(f"{key}: at most {MAX_VALUE} characters")
        if value:
            out[key] = value
    return out


def overview_filters() -> dict[str, str]:
    """Filters of the overview: one per breakdown dimension."""
    return filters(tuple(overview.DIMENSIONS))


def list_filters() -> dict[str, str]:
    """Filters of the conversions list and its export (also the overview's channel ones)."""
    return filters((*LIST_FILTERS, *TOUCH_FILTERS))


def url_with(endpoint: str, site_id: str, **changes: Any) -> str:
    """``endpoint`` for this request's query string with ``changes`` (None removes one)."""
    args = {k: v for k, v in request.args.items() if v}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return url_for(endpoint, site_id=site_id, **args)


def has_range() -> bool:
    """True when the URL names a range (lists and exports cover all time without one)."""
    return bool(request.args.get("range"))
