"""A site's overview: tiles against the previous period, the daily chart, the funnel and
breakdowns, for a range in the site's time zone, narrowed by the filters in the URL.

Numbers come from :func:`firsttag.analytics.overview.report` (the rollups); every table on
the page can be downloaded as CSV (:mod:`.exports_page`).
"""

from __future__ import annotations

from typing import Any

from flask import render_template

from firsttag.analytics import overview
from firsttag.analytics.periods import CHOICES
from firsttag.sites import Site
from firsttag.tag.install import install_link
from firsttag.web.context import services
from firsttag.web.dashboard import charts, report_args
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp

#: How a breakdown's values read on the page.
VALUE_LABELS = {
    "kind": overview.KIND_LABELS,
    "source": overview.SOURCE_LABELS,
    # Last non-direct credits a direct visit when there was no other: none means no visit
    # of this visitor or click in the window at all.
    "channel": {overview.NONE: "(no visit in the window)"},
}


def change(now: float | None, before: float | None) -> float | None:
    """Relative change from ``before`` to ``now`` (None when there was nothing before)."""
    if now is None or not before:
        return None
    return (now - before) / before


@bp.get("/sites/<site_id>/overview", endpoint="overview")
@require_site("viewer")
def overview_page(site: Site) -> Any:
    """The overview page (see the module docstring)."""
    choice, period = report_args.period(site)
    filters = report_args.overview_filters()
    s = services()
    data = overview.report(s.engine, site, period, filters)
    days = [d for d, _ in data["series"]]
    chart = charts.line_chart(
        days,
        [
            charts.Series(
                "Click sessions", "#0b5cad", [t.click_sessions for _, t in data["series"]]
            ),
            charts.Series("Leads", "#8a4b00", [t.leads for _, t in data["series"]]),
            charts.Series("Sales", "#1a7f37", [t.sales for _, t in data["series"]]),
        ],
    )
    now, before = data["totals"], data["previous"]
    plain_filters = [k for k in filters if not overview.DIMENSIONS[k].sessions]
    empty = now.sessions == 0 and not (now.leads or now.sales or now.browser_sales or now.other)
    return render_template(
        "dashboard/overview.html",
        site=site,
        choice=choice,
        choices=CHOICES,
        period=period,
        filters=filters,
        plain_filters=plain_filters,
        dimensions=overview.DIMENSIONS,
        value_labels=VALUE_LABELS,
        data=data,
        now=now,
        before=before,
        change=change,
        chart=chart,
        empty=empty,
        url_with=lambda endpoint="dashboard.overview", **kw: report_args.url_with(
            endpoint, site.id, **kw
        ),
        install_url=install_link(site, "", s.config.secret_key) if empty else None,
    )
