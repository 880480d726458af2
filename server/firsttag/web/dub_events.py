"""Dub's ``GET /events`` (leads and sales), under ``/api/v1`` and at the root; secret key.

The shapes and what is refused are in :mod:`firsttag.analytics.dub_reports`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request

from firsttag.analytics.dub_reports import BadQuery, events
from firsttag.web.context import services
from firsttag.web.errors import field_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import secret_site

bp = Blueprint("dub_events", __name__)


@bp.get("/events")
def events_view() -> Any:
    """Dub's ``events.list``: ``event=leads|sales``, ``interval``/``start``/``end``, pages."""
    site = secret_site()
    charge_site("reads", site)
    try:
        return jsonify(events(services().engine, site, request.args, datetime.now(UTC)))
    except BadQuery as exc:
        raise field_error(exc.field, exc.message) from None
