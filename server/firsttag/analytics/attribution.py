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

from firsttag import store


def touches(
    conn: Any, site_id: str, start: str, end: str, visitors: set[str], clicks: set[str]
) -> list[Any]:
    """Sessions with a click of these visitors or clicks in [start, end], oldest first.

    One query serves a whole batch of conversions; :func:`attribute_from` then picks each
    conversion's touches in memory.
    """
    s = store.sessions
    who = []
    if visitors:
        who.append(s.c.visitor_id.in_(sorted(visitors)))
    if clicks:
        who.append(s.c.click_id.in_(sorted(clicks)))
    if not who:
        return []
    return list(
        conn.execute(
            select(s.c.session_id, s.c.visitor_id, s.c.click_id, s.c.created_at)
            .where(
                s.c.site_id == site_id,
                s.c.click_id.is_not(None),
                s.c.created_at >= start,
                s.c.created_at <= end,
                or_(*who),
            )
            .order_by(s.c.created_at, s.c.id)
        )
    )


def window_start(occurred_at: str, window_days: int) -> str:
    """The earliest touch time that still gets credit for a conversion at ``occurred_at``."""
    return store.format_time(datetime.fromisoformat(occurred_at) - timedelta(days=window_days))


def attribute(
    conn: Any,
    site_id: str,
    window_days: int,
    occurred_at: str,
    visitor_id: str | None = None,
    session_id: str | None = None,
    click_id: str | None = None,
) -> dict[str, Any]:
    """Attribution of one conversion (see :func:`attribute_from`)."""
    rows = touches(
        conn,
        site_id,
        window_start(occurred_at, window_days),
        occurred_at,
        {visitor_id} if visitor_id else set(),
        {click_id} if click_id else set(),
    )
    return attribute_from(rows, window_days, occurred_at, visitor_id, session_id, click_id)


def attribute_from(
    rows: list[Any],
    window_days: int,
    occurred_at: str,
    visitor_id: str | None,
    session_id: str | None,
    click_id: str | None,
) -> dict[str, Any]:
    """First and last touch, ``direct`` or ``assisted``, and the time to conversion.

    ``rows`` are candidate touches, oldest first (they may include other conversions'
    touches). ``direct`` means the converting session carried the last touch (or, for a
    conversion without a session, that it names the last touch's click); ``assisted``
    means an earlier session did. With no touch in the window the type is ``none``.
    """
    start = window_start(occurred_at, window_days)
    mine = [
        r
        for r in rows
        if start <= r.created_at <= occurred_at
        and ((visitor_id and r.visitor_id == visitor_id) or (click_id and r.click_id == click_id))
    ]
    result: dict[str, Any] = {"type": "none", "windowDays": window_days, "touches": len(mine)}
    if not mine:
        return result
    first, last = mine[0], mine[-1]
    if session_id:
        direct = last.session_id == session_id
    else:
        direct = bool(click_id) and last.click_id == click_id
    seconds = datetime.fromisoformat(occurred_at) - datetime.fromisoformat(first.created_at)
    result.update(
        type="direct" if direct else "assisted",
        firstTouch=_touch(first),
        lastTouch=_touch(last),
        timeToConversionSeconds=int(seconds.total_seconds()),
    )
    return result


def _touch(row: Any) -> dict[str, str]:
    return {"sessionId": row.session_id, "clickId": row.click_id, "at": row.created_at}
