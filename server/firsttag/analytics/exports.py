"""CSV exports, streamed: a header row, then rows in chunks, in constant memory.

:func:`conversions_csv` reads with a server-side cursor (``stream_results`` and
``yield_per``: a named cursor on PostgreSQL, SQLite's own step-by-step cursor), so a
million conversions never sit in memory at once: each chunk of :data:`CHUNK_ROWS` rows is
written as CSV text and handed on before the next is fetched. Times are ISO 8601 UTC as
stored; money is in major units of its currency (``12.34``), and minor units beside it.

:func:`table_csv` writes a small table the page already holds (days, breakdowns).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from firsttag import money, store
from firsttag.analytics.explore import list_where
from firsttag.analytics.periods import Period

#: Rows per chunk of a streamed export (one fetch, one piece of the response).
CHUNK_ROWS = 1000

CONVERSION_HEADER = [
    "id", "occurred_at", "received_at", "updated_at", "kind", "source", "confirmed", "name",
    "event_id", "status", "currency", "value", "refunded", "net", "value_minor",
    "refunded_minor", "order_id", "customer_external_id", "visitor_id", "session_id",
    "click_id", "attribution", "url",
]  # fmt: skip


def _major(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return ""
    try:
        places = money.exponent(currency)
    except ValueError:
        places = 2
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


def _lines(rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    # Every text cell quoted: a spreadsheet that splits on ";" (many European locales)
    # would otherwise start a cell mid-value ("Purchase;=cmd…"), past _safe's first-character
    # check (found by an outside review).
    csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
    return out.getvalue()


def _safe(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet: never run what a
    # browser reported (OWASP CSV injection), so such text gets a leading apostrophe.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def conversions_csv(
    engine: Engine, site_id: str, filters: dict[str, str], period: Period | None
) -> Iterator[str]:
    """The conversions matching ``filters`` in ``period`` (all time if None), as CSV chunks."""
    yield _lines([CONVERSION_HEADER])
    c = store.conversions
    query = (
        select(
            c.c.id,
            c.c.occurred_at,
            c.c.received_at,
            c.c.updated_at,
            c.c.kind,
            c.c.source,
            c.c.name,
            c.c.dedup_key,
            c.c.status,
            c.c.currency,
            c.c.value,
            c.c.refunded,
            c.c.order_id,
            c.c.customer_id,
            c.c.visitor_id,
            c.c.session_id,
            c.c.click_id,
            c.c.attribution,
            c.c.url,
        )  # fmt: skip
        .where(*list_where(site_id, filters, period))
        .order_by(c.c.id.desc())
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for chunk in result.partitions():
            yield _lines(_conversion_line(r) for r in chunk)


def _conversion_line(r: Any) -> list[Any]:
    net = None if r.value is None else r.value - r.refunded
    return [
        r.id, r.occurred_at, r.received_at, r.updated_at or "", r.kind, r.source,
        "false" if r.source in store.BROWSER_SOURCES else "true", _safe(r.name),
        _safe(r.dedup_key.split(":", 1)[1]), r.status or "", r.currency or "",
        _major(r.value, r.currency), _major(r.refunded if r.value is not None else None,
                                            r.currency),
        _major(net, r.currency), "" if r.value is None else r.value, r.refunded,
        _safe(r.order_id or ""), _safe(r.customer_id or ""), _safe(r.visitor_id or ""),
        _safe(r.session_id or ""), _safe(r.click_id or ""), r.attribution or "",
        _safe(r.url or ""),
    ]  # fmt: skip


def table_csv(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """A small table as CSV: the header, then its rows."""
    yield _lines([header])
    yield _lines([[_safe(v) for v in row] for row in rows])
