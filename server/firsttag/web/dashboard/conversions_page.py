"""Conversions: the newest first, filtered by kind, source and status, live; and one
conversion's detail (payload, attribution with its touches, the order's state).

Live without a reload: ``static/live.js`` (our own file, so the strict CSP holds) asks
``…/conversions/rows?after=<newest id shown>`` every few seconds, with the page's
filters, and puts the rows it gets on top. Without JavaScript the page still works: a
reload shows the new rows.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from werkzeug.exceptions import BadRequest, NotFound

from firsttag import sites as site_rules
from firsttag.analytics import explore, overview
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.dashboard import report_args
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp

PAGE_SIZE = 50


def _id_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise BadRequest(f"{name}: a conversion ID (a whole number) is required")
    return int(raw)


def _choices() -> dict[str, Any]:
    return {
        "kinds": overview.KIND_LABELS,
        "sources": overview.SOURCE_LABELS,
        "statuses": site_rules.ORDER_STATUSES,
    }


@bp.get("/sites/<site_id>/conversions", endpoint="conversions")
@require_site("viewer")
def conversions_page(site: Site) -> Any:
    """The newest conversions matching the filters (older pages with ``before``)."""
    filters = report_args.list_filters()
    period = report_args.period(site)[1] if report_args.has_range() else None
    before = _id_arg("before")
    rows = explore.conversions(
        services().engine, site.id, filters, period, limit=PAGE_SIZE + 1, before=before
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render_template(
        "dashboard/conversions.html",
        site=site,
        rows=rows,
        filters=filters,
        more=more,
        live=before is None,
        newest=rows[0]["id"] if rows else 0,
        url_with=lambda endpoint="dashboard.conversions", **kw: report_args.url_with(
            endpoint, site.id, **kw
        ),
        **_choices(),
    )


@bp.get("/sites/<site_id>/conversions/rows", endpoint="conversion_rows")
@require_site("viewer")
def conversion_rows(site: Site) -> Any:
    """Table rows (HTML) of conversions newer than ``after``, for the live list."""
    after = _id_arg("after")
    if after is None:
        raise BadRequest("after: a conversion ID (a whole number) is required")
    period = report_args.period(site)[1] if report_args.has_range() else None
    rows = explore.conversions(
        services().engine, site.id, report_args.list_filters(), period, PAGE_SIZE, after=after
    )
    return render_template("dashboard/_conversion_rows.html", site=site, rows=rows)


@bp.get("/sites/<site_id>/conversions/<int:conversion_id>", endpoint="conversion")
@require_site("viewer")
def conversion_page(site: Site, conversion_id: int) -> Any:
    """One conversion: what was reported, its attribution and touches, its order state."""
    row = explore.conversion(services().engine, site.id, conversion_id)
    if row is None:
        raise NotFound("There is no such conversion on this site.")
    return render_template("dashboard/conversion.html", site=site, c=row, **_choices())
