"""Events to rows: the one place where the wire's records become the store's snake_case rows.

Used by the drain (:mod:`firsttag.events.drain`) inside one transaction per batch. Values
are taken as the event carries them: a value the database refuses (a NULL where a column
requires one, a date that does not parse) fails here, and the drain makes that one event
a dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from firsttag import sites, store
from firsttag import touches as visit_touches
from firsttag.analytics import rollups
from firsttag.analytics.attribution import attribute_from, credited_sessions, touches, window_start
from firsttag.bounds import json_default
from firsttag.customer_ids import customer_id as public_customer_id
from firsttag.wire import Conversion, Customer, Erasure, Event, Session, Verification


def write(conn: Any, events: list[Event]) -> None:
    """Write ``events`` on ``conn`` with idempotent inserts (a replayed event is a no-op).

    Customers are written before conversions, so a lead's conversion in the same batch
    finds the click of its customer. An event received before its customer was erased
    (``DELETE /customers/{id}``) brings nothing of the person back: its customer is not
    written and its conversion is stored anonymised (see docs/privacy.md).
    """
    for event in events:
        if isinstance(event.body, Erasure):
            store.erase_customer(conn, event.site, event.body.external_id, event.received_at)
    erased = _erased_before(conn, events)
    before = rollups.stored_before(conn, events)  # which rows the batch adds, for the rollups
    store.insert_ignoring_duplicates(
        conn,
        store.sessions,
        session_rows(conn, events),
        ["site_id", "session_id"],
    )
    store.record_verifications(
        conn, [verification_row(e, e.body) for e in events if isinstance(e.body, Verification)]
    )
    store.upsert_customers(
        conn,
        [
            customer_row(e, e.body)
            for e in events
            if isinstance(e.body, Customer)
            and not erased(e.site, e.body.external_id, e.received_at)
        ],
    )
    rows = conversion_rows(conn, [e for e in events if isinstance(e.body, Conversion)])
    for row in rows:
        if erased(row["site_id"], row["customer_id"], row["received_at"]):
            row.update(store.erased_conversion_fields(row["site_id"], row))
    store.insert_ignoring_duplicates(
        conn,
        store.conversions,
        [r for r in rows if r["status"] is None],
        ["site_id", "dedup_key"],
    )
    for row in rows:
        if row["status"] is not None:
            store.upsert_order(conn, row)
    store.insert_ignoring_duplicates(
        conn,
        store.order_states,
        [order_state_row(r) for r in rows if r["status"] is not None],
        ["site_id", "dedup_key", "state_version"],
    )
    rollups.refresh(conn, events, before)  # the dashboard's counts, in this same transaction


def _erased_before(conn: Any, events: list[Event]) -> Callable[[str, str | None, str], bool]:
    """A predicate ``(site, external ID, received at)``: was that customer erased since?

    An event received at or before its customer's erasure must not bring the person back.
    """
    wanted: dict[str, set[str]] = {}
    for event in events:
        body = event.body
        external_id = body.external_id if isinstance(body, Customer) else None
        if isinstance(body, Conversion):
            external_id = body.customer_id
        if external_id:
            wanted.setdefault(event.site, set()).add(public_customer_id(event.site, external_id))
    erased = {
        (site_id, public_id): at
        for site_id, ids in wanted.items()
        for public_id, at in store.erasure_times(conn, site_id, ids).items()
    }

    def check(site_id: str, external_id: str | None, received_at: str) -> bool:
        if not external_id or not erased:
            return False
        at = erased.get((site_id, public_customer_id(site_id, external_id)))
        return at is not None and received_at <= at

    return check


def session_row(event: Event, s: Session) -> dict[str, Any]:
    """The ``sessions`` row of a session event."""
    return {
        "site_id": event.site,
        "session_id": s.session_id,
        "visitor_id": s.visitor_id,
        "click_id": s.click_id or None,
        "url": s.url,
        "referrer": s.referrer or None,
        "user_agent": s.user_agent,
        "bot": bool(s.bot),
        "created_at": event.received_at,
    }


def session_rows(conn: Any, events: list[Event]) -> list[dict[str, Any]]:
    """The ``sessions`` rows of the session events, each with where its visit came from."""
    origins: dict[str, tuple[str, ...]] = {}
    rows = []
    for event in events:
        if isinstance(event.body, Session):
            if event.site not in origins:
                origins[event.site] = sites.site_origins(conn, event.site)
            rows.append(
                {**session_row(event, event.body), **touch_columns(event.body, origins[event.site])}
            )
    return rows


def touch_columns(s: Session, origins: tuple[str, ...]) -> dict[str, Any]:
    """The touch of a session (:mod:`firsttag.touches`); ``origins`` are the site's own."""
    touch = visit_touches.parse(s.url, s.referrer, origins, s.click_id)
    return {**touch.columns(), "device": visit_touches.device(s.user_agent, bool(s.bot))}


def verification_row(event: Event, v: Verification) -> dict[str, Any]:
    """The verification of a session (the first time is kept by the store)."""
    return {"site_id": event.site, "session_id": v.session_id, "verified_at": event.received_at}


def customer_row(event: Event, c: Customer) -> dict[str, Any]:
    """The ``customers`` row of a customer event."""
    return {
        "site_id": event.site,
        "external_id": c.external_id,
        "name": c.name,
        "email": c.email,
        "avatar": c.avatar,
        "click_id": c.click_id or None,
        "created_at": event.received_at,
        "public_id": public_customer_id(event.site, c.external_id),
    }


def conversion_rows(conn: Any, events: list[Event]) -> list[dict[str, Any]]:
    """Rows for conversion events, attributed with one touches query per site."""
    by_site: dict[str, list[tuple[Event, Conversion, str | None]]] = {}
    for event in events:
        c = event.body
        assert isinstance(c, Conversion)
        click = c.click_id
        if not click and c.click_from_customer:
            click = store.customer_click(conn, event.site, c.click_from_customer)
        by_site.setdefault(event.site, []).append((event, c, click))
    rows = []
    for site_id, site_events in by_site.items():
        window = sites.site_settings(conn, site_id).attribution_window_days
        candidates = _Candidates(
            touches(
                conn,
                site_id,
                start=min(window_start(c.occurred_at, window) for _, c, _ in site_events),
                end=max(c.occurred_at for _, c, _ in site_events),
                visitors={c.visitor_id for _, c, _ in site_events if c.visitor_id},
                clicks={click for _, _, click in site_events if click},
            )
        )
        unattributed: dict[str, Any] | None = None
        for event, c, click in site_events:
            visits = candidates.of(c.visitor_id, click)
            if visits:
                columns = attribution_columns(
                    attribute_from(visits, window, c.occurred_at, c.visitor_id, c.session_id, click)
                )
            else:
                # Without a visit the attribution is the same for every conversion of the
                # site (it names only the window): computed and serialised once a batch.
                if unattributed is None:
                    unattributed = attribution_columns(
                        attribute_from([], window, c.occurred_at, None, None, None)
                    )
                columns = unattributed
            rows.append(_conversion_row(event, c, click, columns))
    return rows


class _Candidates:
    """A batch's candidate visits, indexed by visitor and by click.

    :func:`attribute_from` keeps the visits of the conversion's visitor or click; handing
    it only those (in their order) gives the same result without scanning every visit
    of the batch for every conversion.
    """

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.by_visitor: dict[str, list[int]] = {}
        self.by_click: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if row.visitor_id:
                self.by_visitor.setdefault(row.visitor_id, []).append(i)
            if row.click_id:
                self.by_click.setdefault(row.click_id, []).append(i)

    def of(self, visitor_id: str | None, click_id: str | None) -> list[Any]:
        """The visits of ``visitor_id`` or of ``click_id``, oldest first."""
        mine = self.by_visitor.get(visitor_id, []) if visitor_id else []
        theirs = self.by_click.get(click_id, []) if click_id else []
        if theirs:
            mine = sorted(set(mine).union(theirs)) if mine else theirs
        return [self.rows[i] for i in mine]


def attribution_columns(attribution: dict[str, Any]) -> dict[str, Any]:
    """The ``conversions`` columns of an attribution: its JSON and the credited sessions."""
    return {"attribution": _json(attribution), **credited_sessions(attribution)}


def conversion_row(
    event: Event, c: Conversion, click_id: str | None, attribution: dict[str, Any]
) -> dict[str, Any]:
    """The ``conversions`` row of a conversion event, with its click and attribution."""
    return _conversion_row(event, c, click_id, attribution_columns(attribution))


def _conversion_row(
    event: Event, c: Conversion, click_id: str | None, attribution: dict[str, Any]
) -> dict[str, Any]:
    # ``attribution``: the columns of attribution_columns().
    return {
        "site_id": event.site,
        "dedup_key": c.dedup_key,
        "kind": c.kind,
        "source": c.source,
        "name": c.name,
        "visitor_id": c.visitor_id,
        "session_id": c.session_id,
        "click_id": click_id,
        "customer_id": c.customer_id,
        "order_id": c.order_id,
        "value": c.value,
        "refunded": c.refunded or 0,
        "currency": c.currency,
        "status": c.status,
        "state_version": c.state_version,
        "details": _json(c.details),
        "metadata": _json(c.metadata),
        "fingerprint": _json(c.fingerprint),
        **attribution,
        "url": c.url,
        "occurred_at": c.occurred_at,
        "received_at": event.received_at,
        "updated_at": event.received_at,
    }


def order_state_row(row: dict[str, Any]) -> dict[str, Any]:
    """The ``order_states`` row of an order's ``conversions`` row: this reported state."""
    return {
        "site_id": row["site_id"],
        "dedup_key": row["dedup_key"],
        "state_version": row["state_version"],
        "status": row["status"],
        "refunded": row["refunded"],
        "received_at": row["received_at"],
    }


def _json(value: Any) -> str | None:
    return (
        json.dumps(value, separators=(",", ":"), allow_nan=False, default=json_default)
        if value
        else None
    )
