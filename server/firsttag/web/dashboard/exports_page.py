"""CSV downloads: every table of the overview, and the conversions for any range and filter.

Access is checked like the pages (``require_site("viewer")``). Conversions are streamed
(:func:`firsttag.analytics.exports.conversions_csv`), so the response starts at once and
a million rows never sit in memory.
"""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from werkzeug.exceptions import NotFound

from firsttag.analytics import exports, overview
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.dashboard import report_args
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp

_TOTAL_COLUMNS = ["click_sessions", "sessions", "leads", "sales", "browser_sales", "other"]


def _csv(chunks: Any, filename: str) -> Response:
    return Response(
        stream_with_context(chunks),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _money(values: dict[str, int]) -> str:
    # Several currencies never add up: "EUR 12.50; USD 3.00", in major units.
    return "; ".join(f"{c} {exports._major(v, c)}" for c, v in sorted(values.items()))


def _line(label: str, t: overview.Totals) -> list[Any]:
    return [label, *(getattr(t, k) for k in _TOTAL_COLUMNS), _money(t.revenue),
            _money(t.browser_revenue)]  # fmt: skip


@bp.get("/sites/<site_id>/export/<table>.csv")
@require_site("viewer")
def export_table(site: Site, table: str) -> Any:
    """One table of the overview (``days`` or a breakdown dimension) as CSV."""
    if table != "days" and table not in overview.DIMENSIONS:
        raise NotFound()
    choice, period = report_args.period(site)
    filters = report_args.overview_filters()
    engine = services().engine
    if table == "days":
        rows = overview.series(engine, site, period, filters)
        first = "date"
    else:
        rows = overview.breakdown(engine, site, period, table, filters)
        first = table
    header = [first, *_TOTAL_COLUMNS, "revenue", "browser_revenue"]
    name = f"{site.id}-{table}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return _csv(exports.table_csv(header, (_line(k, t) for k, t in rows)), name)


@bp.get("/sites/<site_id>/export/conversions.csv", endpoint="export_conversions")
@require_site("viewer")
def export_conversions(site: Site) -> Any:
    """The conversions matching the URL's filters and range (all time without one), streamed."""
    period = report_args.period(site)[1] if report_args.has_range() else None
    filters = report_args.list_filters()
    engine = services().engine
    name = f"{site.id}-conversions.csv"
    return _csv(exports.conversions_csv(engine, site.id, filters, period), name)
