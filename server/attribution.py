"""Attribution: which touches led to a conversion.

A *touch* is a session that arrived with a click ID (``dub_id``). A conversion is matched
to the touches of its visitor (or of its click) within the site's attribution window
before it happened. The result is computed by the worker when the conversion is first
stored and frozen with it, so later settings changes never rewrite history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from . import store


def attribute(
    conn: Any,
    site_id: str,
    window_days: int,
    occurred_at: str,
    visitor_id: str | None = None,
    session_id: str | None = None,
    click_id: str | None = None,
) -> dict[str, Any]:
    """First and last touch, ``direct`` or ``assisted``, and the time to conversion.

    ``direct`` means the converting session carried the last touch (or, for a conversion
    without a session, that it names the last touch's click); ``assisted`` means an earlier
    session did. With no touch in the window the type is ``none``.
    """
    s = store.sessions
    end = datetime.fromisoformat(occurred_at)
    start = store.format_time(end - timedelta(days=window_days))
    who = []
    if visitor_id:
        who.append(s.c.visitor_id == visitor_id)
    if click_id:
        who.append(s.c.click_id == click_id)
    result: dict[str, Any] = {"type": "none", "windowDays": window_days, "touches": 0}
    if not who:
        return result
    rows = conn.execute(
        select(s.c.session_id, s.c.click_id, s.c.created_at)
        .where(
            s.c.site_id == site_id,
            s.c.click_id.is_not(None),
            s.c.created_at >= start,
            s.c.created_at <= occurred_at,
            or_(*who),
        )
        .order_by(s.c.created_at, s.c.id)
    ).all()
    if not rows:
        return result
    first, last = rows[0], rows[-1]
    if session_id:
        direct = last.session_id == session_id
    else:
        direct = bool(click_id) and last.click_id == click_id
    seconds = (end - datetime.fromisoformat(first.created_at)).total_seconds()
    result.update(
        type="direct" if direct else "assisted",
        touches=len(rows),
        firstTouch=_touch(first),
        lastTouch=_touch(last),
        timeToConversionSeconds=int(seconds),
    )
    return result


def _touch(row: Any) -> dict[str, str]:
    return {"sessionId": row.session_id, "clickId": row.click_id, "at": row.created_at}
