"""Rows behind the dashboard: the conversions list, one conversion, a customer's journey.

Pure reads on the store (no Flask); the pages in :mod:`firsttag.web.dashboard` show them.
Conversions come newest first by arrival (their row ID), so a page and its live updates
(``after``: rows newer than the newest shown) never skip or repeat one.

The store keeps an order's *latest* state (status, refunded amount, state version, when
it changed), not each change: the "order history" a page shows is that state with the
first report and the last change, and says so.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from firsttag import store
from firsttag.analytics.periods import Period
from firsttag.conversions import state_time

#: Filters of the conversions list on its own columns (URL parameter = column).
LIST_FILTERS = ("kind", "source", "status", "name")
#: Filters on the visit a conversion is credited to (last non-direct, as the overview's
#: channel tables): URL parameter → ``sessions`` column. ``(none)`` matches no such visit.
TOUCH_FILTERS = {
    "channel": "channel",
    "visit_source": "source",
    "campaign": "campaign",
    "landing_page": "landing_page",
    "device": "device",
}
NONE = "(none)"


def _credited(column: str, value: str) -> Any:
    c, s = store.conversions, store.sessions
    visit = [s.c.site_id == c.c.site_id, s.c.session_id == c.c.last_non_direct_session_id]
    if value == NONE:
        known = select(s.c.session_id).where(*visit, s.c[column].is_not(None), s.c[column] != "")
        return ~known.exists()
    return select(s.c.session_id).where(*visit, s.c[column] == value).exists()


def list_where(site_id: str, filters: dict[str, str], period: Period | None = None) -> list[Any]:
    """The WHERE terms of a conversions list (or export) for ``filters`` and ``period``."""
    c = store.conversions
    terms = [c.c.site_id == site_id]
    for key in LIST_FILTERS:
        value = filters.get(key)
        if value:
            terms.append(c.c[key] == value)
    for key, column in TOUCH_FILTERS.items():
        value = filters.get(key)
        if value:
            terms.append(_credited(column, value))
    if period is not None:
        lo, hi = (store.format_time(m) for m in period.utc_bounds())
        terms += [c.c.occurred_at >= lo, c.c.occurred_at < hi]
    return terms


def conversions(
    engine: Engine,
    site_id: str,
    filters: dict[str, str],
    period: Period | None = None,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` conversions, newest first; ``before``/``after`` a row ID to page."""
    c = store.conversions
    query = select(c).where(*list_where(site_id, filters, period))
    if before is not None:
        query = query.where(c.c.id < before)
    if after is not None:
        query = query.where(c.c.id > after)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(c.c.id.desc()).limit(limit)).mappings().all()
    return [_row(r) for r in rows]


def _row(r: Any) -> dict[str, Any]:
    row = dict(r)
    row["browser"] = row["source"] in store.BROWSER_SOURCES
    for key in ("details", "metadata", "attribution", "fingerprint"):
        row[key] = json.loads(row[key]) if row[key] else None
    return row


def conversion(engine: Engine, site_id: str, conversion_id: int) -> dict[str, Any] | None:
    """One conversion of ``site_id`` with its touches, or None (also for another site's)."""
    c = store.conversions
    with engine.connect() as conn:
        found = (
            conn.execute(select(c).where(c.c.site_id == site_id, c.c.id == conversion_id))
            .mappings()
            .first()
        )
        if found is None:
            return None
        row = _row(found)
        attribution = row["attribution"] or {}
        row["touches"] = _touches(
            conn, site_id, row, attribution.get("windowDays"), row["occurred_at"]
        )
        row["states"] = _order_states(conn, site_id, row) if row.get("order_id") else []
    return row


def _order_states(conn: Any, site_id: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reported state of the order, oldest first; ``current`` marks the stored one."""
    o = store.order_states
    found = conn.execute(
        select(o.c.state_version, o.c.status, o.c.refunded, o.c.received_at)
        .where(o.c.site_id == site_id, o.c.dedup_key == row["dedup_key"])
        .order_by(o.c.state_version)
    ).mappings()
    return [
        {
            "at": state_time(s["state_version"]),
            "status": s["status"],
            "refunded": s["refunded"],
            "received_at": s["received_at"],
            "current": s["state_version"] == row.get("state_version"),
        }
        for s in found
    ]


def _touches(
    conn: Any, site_id: str, row: dict[str, Any], window_days: int | None, until: str
) -> list[dict[str, Any]]:
    """The sessions with a click of this conversion's visitor or click, up to it."""
    s = store.sessions
    who = []
    if row.get("visitor_id"):
        who.append(s.c.visitor_id == row["visitor_id"])
    if row.get("click_id"):
        who.append(s.c.click_id == row["click_id"])
    if not who:
        return []
    query = (
        select(*_touch_columns())
        .where(s.c.site_id == site_id, _is_touch(), s.c.created_at <= until, or_(*who))
        .order_by(s.c.created_at.desc())
        .limit(50)
    )
    out = []
    for t in conn.execute(query).mappings():
        touch = dict(t)
        touch["before"] = _seconds(t["created_at"], until)
        touch["in_window"] = window_days is None or touch["before"] <= window_days * 86400
        out.append(touch)
    return out


def _touch_columns() -> list[Any]:
    s = store.sessions
    return [s.c.session_id, s.c.click_id, s.c.url, s.c.referrer, s.c.created_at,
            s.c.channel, s.c.source, s.c.medium, s.c.campaign]  # fmt: skip


def _is_touch() -> Any:
    """A session that brought the visitor from somewhere (as attribution counts touches):
    any channel but direct; before channels were parsed, a session with a click."""
    s = store.sessions
    return or_(
        and_(s.c.channel.is_not(None), s.c.channel != "direct"),
        and_(s.c.channel.is_(None), s.c.click_id.is_not(None)),
    )


def _seconds(earlier: str, later: str) -> int:
    return int((datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds())


def customer(engine: Engine, site_id: str, external_id: str) -> dict[str, Any] | None:
    """A customer's journey: touches, leads, sales and refunds, oldest first; or None."""
    t, c, s = store.customers, store.conversions, store.sessions
    with engine.connect() as conn:
        person = (
            conn.execute(select(t).where(t.c.site_id == site_id, t.c.external_id == external_id))
            .mappings()
            .first()
        )
        rows = [
            _row(r)
            for r in conn.execute(
                select(c)
                .where(c.c.site_id == site_id, c.c.customer_id == external_id)
                .order_by(c.c.occurred_at, c.c.id)
            ).mappings()
        ]
        if person is None and not rows:
            return None
        visitors = sorted({r["visitor_id"] for r in rows if r["visitor_id"]})
        clicks = sorted(
            {r["click_id"] for r in rows if r["click_id"]}
            | ({person["click_id"]} if person and person["click_id"] else set())
        )
        who = []
        if visitors:
            who.append(s.c.visitor_id.in_(visitors))
        if clicks:
            who.append(s.c.click_id.in_(clicks))
        sessions = []
        if who:
            sessions = [
                dict(r)
                for r in conn.execute(
                    select(*_touch_columns())
                    .where(s.c.site_id == site_id, _is_touch(), or_(*who))
                    .order_by(s.c.created_at)
                    .limit(200)
                ).mappings()
            ]
    steps: list[dict[str, Any]] = [
        {"at": x["created_at"], "what": "touch", "session": x} for x in sessions
    ]
    for r in rows:
        steps.append({"at": r["occurred_at"], "what": r["kind"], "conversion": r})
        if r["refunded"]:
            steps.append({"at": r["updated_at"] or r["occurred_at"], "what": "refund",
                          "conversion": r})  # fmt: skip
    steps.sort(key=lambda step: step["at"])
    revenue: dict[str, int] = {}
    for r in rows:
        if r["kind"] == "sale" and r["currency"] and r["value"] is not None and not r["browser"]:
            revenue[r["currency"]] = revenue.get(r["currency"], 0) + r["value"] - r["refunded"]
    return {
        "customer": dict(person) if person else {"external_id": external_id, "name": None},
        "conversions": rows,
        "steps": steps,
        "revenue": dict(sorted(revenue.items())),
    }
