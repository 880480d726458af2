"""Attribution: which touches led to a conversion.

A *visit* is a session; a *touch* is a visit that came from somewhere: an ad click ID, UTM
tags, an outside referrer or a Dub click (its ``channel``, parsed by
:mod:`firsttag.touches`, is not ``direct``). A conversion is matched to the visits of its
visitor (or of its click) within the site's attribution window before it happened. The
result is computed by the worker when the conversion is first stored and frozen with it,
so later settings changes never rewrite history.

Three models name the touch that gets the credit (``models`` in the result):

- ``firstTouch``: the first touch in the window (the first visit if none was a touch);
- ``lastTouch``: the last visit, a direct one included;
- ``lastNonDirect``: the last touch, or the last visit if none was a touch (the model most
  ad tools report).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import or_, select

from firsttag import store

#: Columns of a visit that a credited touch reports.
_TOUCH_COLUMNS = (
    "channel",
    "source",
    "medium",
    "campaign",
    "term",
    "content",
    "click_id_type",
    "click_id_value",
    "landing_page",
)

#: The models, their keys in the result and the conversions column of their session.
MODELS = {
    "firstTouch": "first_touch_session_id",
    "lastTouch": "last_touch_session_id",
    "lastNonDirect": "last_non_direct_session_id",
}


def touches(
    conn: Any, site_id: str, start: str, end: str, visitors: set[str], clicks: set[str]
) -> list[Any]:
    """Sessions of these visitors or clicks in [start, end], oldest first.

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
            select(
                s.c.session_id,
                s.c.visitor_id,
                s.c.click_id,
                s.c.created_at,
                *(s.c[name] for name in _TOUCH_COLUMNS),
            )
            .where(
                s.c.site_id == site_id,
                s.c.created_at >= start,
                s.c.created_at <= end,
                or_(*who),
            )
            .order_by(s.c.created_at, s.c.id)
        )
    )


@lru_cache(maxsize=4096)  # a batch's conversions mostly share a few timestamps
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
    """First and last touch, ``direct`` or ``assisted``, the models and the time to conversion.

    ``rows`` are candidate visits, oldest first (they may include other conversions'
    visits). ``direct`` means the converting session carried the last touch (or, for a
    conversion without a session, that it names the last touch's click); ``assisted``
    means an earlier session did. With no touch in the window the type is ``none``.
    ``models`` holds the touch each model credits (None without any visit).
    """
    start = window_start(occurred_at, window_days)
    visits = [
        r
        for r in rows
        if start <= r.created_at <= occurred_at
        and ((visitor_id and r.visitor_id == visitor_id) or (click_id and r.click_id == click_id))
    ]
    mine = [r for r in visits if _is_touch(r)]
    result: dict[str, Any] = {"type": "none", "windowDays": window_days, "touches": len(mine)}
    result["models"] = {
        "firstTouch": _touch(mine[0]) if mine else _touch(visits[0]) if visits else None,
        "lastTouch": _touch(visits[-1]) if visits else None,
        "lastNonDirect": _touch(mine[-1]) if mine else _touch(visits[-1]) if visits else None,
    }
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


def credited_sessions(attribution: dict[str, Any]) -> dict[str, str | None]:
    """The ``conversions`` columns naming the session each model credits, and the type."""
    models = attribution.get("models") or {}
    columns = {c: (models.get(name) or {}).get("sessionId") for name, c in MODELS.items()}
    return {**columns, "attribution_type": attribution.get("type")}


def _is_touch(row: Any) -> bool:
    # Rows stored before channels were parsed have none: their Dub click made them a touch.
    if row.channel is None:
        return row.click_id is not None
    return row.channel != "direct"


def _channel(row: Any) -> str:
    if row.channel is not None:
        return row.channel
    return "affiliate" if row.click_id else "direct"


def _touch(row: Any) -> dict[str, Any]:
    return {
        "sessionId": row.session_id,
        "clickId": row.click_id,
        "at": row.created_at,
        "channel": _channel(row),
        "source": row.source,
        "medium": row.medium,
        "campaign": row.campaign,
        "term": row.term,
        "content": row.content,
        "clickIdType": row.click_id_type or ("dub_id" if row.click_id else None),
        "clickIdValue": row.click_id_value or row.click_id,
        "landingPage": row.landing_page,
    }
