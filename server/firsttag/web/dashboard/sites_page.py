"""The sites page: every site the user may see, with today's visits, leads, sales, revenue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import g, render_template

from firsttag import users
from firsttag.analytics import queries
from firsttag.sites import get_site
from firsttag.tag.install import install_link
from firsttag.web.context import services
from firsttag.web.dashboard.auth import login_required
from firsttag.web.dashboard.blueprint import bp


@bp.get("/sites")
@login_required
def sites() -> Any:
    """The user's sites, each with today's numbers (UTC day) and a way in."""
    s = services()
    today = datetime.now(UTC).date()
    rows = []
    for site_id, role in sorted(users.granted_sites(s.engine, g.user.id).items()):
        site = get_site(s.engine, site_id)
        if site is None:
            continue
        funnel = queries.funnel(s.engine, site, today, today, exclude_bots=True)
        steps = {step["name"]: step["count"] for step in funnel["steps"]}
        rows.append(
            {
                "site": site,
                "role": role,
                "sessions": queries.session_count(s.engine, site, today, today, exclude_bots=True),
                "leads": steps["leads"],
                "sales": steps["sales"],
                "revenue": sorted(funnel["revenue"].items()),
                "install_url": install_link(site, "", s.config.secret_key),
            }
        )
    rows.sort(key=lambda r: r["site"].name.lower())
    return render_template("dashboard/sites.html", rows=rows, today=today)
