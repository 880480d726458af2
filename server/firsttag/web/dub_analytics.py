"""Dub's ``GET /analytics`` (count, timeseries, event_names), under ``/api/v1`` and at the root.

Secret key only. The numbers and what is refused are in
:mod:`firsttag.analytics.dub_reports`; the counting rules in
:mod:`firsttag.analytics.queries`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request

from firsttag.analytics.dub_reports import BadQuery, analytics
from firsttag.web.context import services
from firsttag.web.errors import field_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import secret_site

bp = Blueprint("dub_analytics", __name__)


@bp.get("/analytics")
def analytics_view() -> Any:
    """Dub's ``analytics.retrieve``: ``event``, ``groupBy``, ``interval``/``start``/``end``."""
    site = secret_site()
    charge_site("reads", site)
    try:
        return jsonify(analytics(services().engine, site, request.args, datetime.now(UTC)))
    except BadQuery as exc:
        raise field_error(exc.field, exc.message) from None
