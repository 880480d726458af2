"""Customers as Dub's API shows them: look up, list, update, and what erasure removes.

Dub names a customer by its ``cus_…`` ID (:mod:`firsttag.customer_ids`, stored as
``customers.public_id``) or by ``ext_<externalId>``. Reads and updates go straight to the
store: the worker's upsert of an existing customer only fills a missing click
(:func:`firsttag.store.upsert_customers`), so an update written here is never overwritten
by a lead queued before it. Erasure goes through the queue instead (an
:class:`~firsttag.wire.Erasure` event) so that it follows every event received before it;
see ``docs/privacy.md``.

Pure: no Flask. :mod:`firsttag.web.dub_customers` reads the request and answers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from firsttag import store
from firsttag.admission import WAIT_FIRST_POLL_S, WAIT_MAX_POLL_S, WAIT_SECONDS, claim_key
from firsttag.analytics.dub_reports import dub_time
from firsttag.customer_ids import PREFIX
from firsttag.wire import Erasure, Event

#: Dub's prefix for a customer named by the site's own ID: ``ext_<externalId>``.
EXTERNAL_PREFIX = "ext_"


def dub_customer(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored customer in the shape of Dub's customer object."""
    return {
        "id": row["public_id"],
        "externalId": row["external_id"],
        "name": row["name"],
        "email": row["email"],
        "avatar": row["avatar"],
        "country": None,
        "createdAt": dub_time(row["created_at"]),
        "link": None,
        "programId": None,
        "partner": None,
        "discount": None,
    }


def find(engine: Engine, site_id: str, dub_id: str) -> dict[str, Any] | None:
    """The stored customer named ``dub_id`` (``cus_…`` or ``ext_<externalId>``), or None."""
    t = store.customers
    if dub_id.startswith(EXTERNAL_PREFIX):
        match = t.c.external_id == dub_id[len(EXTERNAL_PREFIX) :]
    elif dub_id.startswith(PREFIX):
        match = t.c.public_id == dub_id
    else:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.site_id == site_id, match)).mappings().first()
    return dict(row) if row else None


@dataclass(frozen=True)
class ListQuery:
    """What ``GET /customers`` asks for, with Dub's precedence already applied."""

    email: str | None = None
    external_id: str | None = None
    search: str | None = None
    #: A filter on something firsttag does not keep (country, link, program, partner):
    #: no customer of firsttag matches it.
    matches_nothing: bool = False
    ascending: bool = False
    starting_after: str | None = None
    ending_before: str | None = None
    page: int | None = None
    page_size: int = 100


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_customers(engine: Engine, site_id: str, query: ListQuery) -> list[dict[str, Any]]:
    """One page of customers in Dub's order (``createdAt``, newest first by default).

    Filters as Dub's: ``email`` wins over ``externalId``, which wins over ``search`` (a
    case-insensitive match on email or name, or the exact ``cus_…`` ID). Pages follow
    Dub's cursor (``startingAfter``/``endingBefore``: a customer ID), or the deprecated
    ``page``; a cursor naming no customer gives an empty page.
    """
    if query.matches_nothing:
        return []
    t = store.customers
    where: list[Any] = [t.c.site_id == site_id]
    if query.email is not None:
        where.append(t.c.email == query.email)
    elif query.external_id is not None:
        where.append(t.c.external_id == query.external_id)
    elif query.search:
        pattern = f"%{_escape_like(query.search)}%"
        where.append(
            or_(
                t.c.email.ilike(pattern, escape="\\"),
                t.c.name.ilike(pattern, escape="\\"),
                t.c.public_id == query.search,
            )
        )
    ascending = query.ascending
    cursor_id = query.starting_after or query.ending_before
    if query.ending_before and not query.starting_after:
        ascending = not ascending  # walk back from the cursor, then restore the order
    with engine.connect() as conn:
        if cursor_id:
            cursor = conn.execute(
                select(t.c.created_at, t.c.public_id).where(
                    t.c.site_id == site_id, t.c.public_id == cursor_id
                )
            ).first()
            if cursor is None:
                return []
            where.append(_after(cursor.created_at, cursor.public_id, ascending))
        order = (
            (t.c.created_at.asc(), t.c.public_id.asc())
            if ascending
            else (t.c.created_at.desc(), t.c.public_id.desc())
        )
        stmt = select(t).where(*where).order_by(*order).limit(query.page_size)
        if query.page and not cursor_id:
            stmt = stmt.offset((query.page - 1) * query.page_size)
        rows = [dub_customer(r) for r in conn.execute(stmt).mappings()]
    if query.ending_before and not query.starting_after:
        rows.reverse()
    return rows


def _after(created_at: str, public_id: str, ascending: bool) -> Any:
    # Rows strictly past the cursor in the (createdAt, id) order; the ID breaks ties.
    t = store.customers
    if ascending:
        return or_(
            t.c.created_at > created_at,
            and_(t.c.created_at == created_at, t.c.public_id > public_id),
        )
    return or_(
        t.c.created_at < created_at,
        and_(t.c.created_at == created_at, t.c.public_id < public_id),
    )


def update(
    engine: Engine, site_id: str, external_id: str, changes: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Change ``name``/``email``/``avatar`` of a stored customer in one transaction.

    Returns the customer as now stored, or None when it is not (or no longer) stored.
    """
    t = store.customers
    match = (t.c.site_id == site_id) & (t.c.external_id == external_id)
    with engine.begin() as conn:
        if changes:
            conn.execute(t.update().where(match).values(**changes))
        row = conn.execute(select(t).where(match)).mappings().first()
    return dict(row) if row else None


def claim_keys(engine: Engine, site_id: str, external_id: str) -> list[str]:
    """The Redis claims that name the customer: its deferred lead and its stored conversions.

    Erasure deletes them, so the external ID does not linger in Redis for the claims'
    lifetime (a re-sent lead is then new data, stored again).
    """
    c = store.conversions
    with engine.connect() as conn:
        keys = conn.execute(
            select(c.c.dedup_key).where(c.c.site_id == site_id, c.c.customer_id == external_id)
        ).scalars()
        return [claim_key(site_id, f"customer:{external_id}")] + [
            claim_key(site_id, k) for k in keys
        ]


def erasure_event(site_id: str, external_id: str, received_at: str) -> Event:
    """The queued event that erases ``external_id`` once the worker reaches it."""
    return Event(site_id, received_at, Erasure(external_id))


def erased_within(
    engine: Engine, site_id: str, public_id: str, since: str, seconds: float = WAIT_SECONDS
) -> bool:
    """Whether the worker erased the customer (at ``since`` or later) within ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = WAIT_FIRST_POLL_S
    while True:
        with engine.connect() as conn:
            at = store.erasure_times(conn, site_id, [public_id]).get(public_id)
        if at is not None and at >= since:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, WAIT_MAX_POLL_S)
