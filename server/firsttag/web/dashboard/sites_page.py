"""The sites page: every site the user may see, with today's visits, leads, sales, revenue.

"Today" is each site's own day, in its time zone (a site in Tokyo and one in Los Angeles
are on different dates), counted from the rollups as the overview counts it.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template

from firsttag import users
from firsttag.analytics import overview
from firsttag.analytics.periods import resolve
from firsttag.sites import get_site
from firsttag.tag.install import install_link
from firsttag.web.context import services
from firsttag.web.dashboard.auth import login_required
from firsttag.web.dashboard.blueprint import bp


@bp.get("/sites")
@login_required
def sites() -> Any:
    """The user's sites, each with today's numbers (the site's day) and a way in."""
    s = services()
    rows = []
    for site_id, role in sorted(users.granted_sites(s.engine, g.user.id).items()):
        site = get_site(s.engine, site_id)
        if site is None:
            continue
        _, today = resolve("today", site.settings.time_zone)
        now = overview.totals(s.engine, site, today, {})
        rows.append(
            {
                "site": site,
                "role": role,
                "today": today.start,
                "sessions": now.sessions,
                "leads": now.leads,
                "sales": now.sales,
                "revenue": sorted(now.revenue.items()),
                "install_url": install_link(site, "", s.config.secret_key),
            }
        )
    rows.sort(key=lambda r: r["site"].name.lower())
    return render_template("dashboard/sites.html", rows=rows)
