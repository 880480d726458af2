"""A site's settings and keys, for its owners.

Every change goes through the same functions as ``firsttag sites update`` (one rule per
setting: :meth:`firsttag.sites.Settings.validated`, :func:`firsttag.sites.normalise_origin`),
all at once or not at all. Key rotation uses :func:`firsttag.sites.rotate_secret_key` (the
new key is shown once, on the answer to the POST, and stored hashed) and
:func:`firsttag.sites.rotate_site_key`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from firsttag import sites as site_rules
from firsttag import users
from firsttag.analytics import rollups
from firsttag.sites import ORDER_STATUSES, Site, time_zones
from firsttag.tag.install import install_link
from firsttag.web.context import services
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp

#: The grace periods an owner may give a replaced secret key: (seconds, label).
GRACE_CHOICES = (
    (0, "None: the old key stops now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (7 * 86400, "7 days"),
    (30 * 86400, "30 days"),
)


def settings_page(site: Site, status: int = 200, **extra: Any) -> Any:
    """The settings page of ``site`` (with ``extra`` template values), as a response."""
    return _page(site, status, **extra)


def _page(site: Site, status: int = 200, **extra: Any) -> Any:
    s = services()
    context = {
        "site": site,
        "statuses": ORDER_STATUSES,
        "zones": sorted(time_zones()),
        "grace_choices": GRACE_CHOICES,
        "grace_ends": site_rules.secret_grace_ends(s.engine, site.id),
        "install_url": install_link(site, "", s.config.secret_key),
        "form": None,
        "error": None,
        "new_secret_key": None,
        "site_users": users.site_users(s.engine, site.id),
        "roles": users.ROLES,
        **extra,
    }
    return render_template("dashboard/settings.html", **context), status


@bp.get("/sites/<site_id>/settings")
@require_site("owner")
def settings(site: Site) -> Any:
    """The settings form, the keys and the install link."""
    return _page(site)


def _changes(form: MultiDict[str, str]) -> tuple[list[str], dict[str, Any]]:
    """The origins and settings a submitted form asks for; ValueError naming a bad field."""
    raw_days = form.get("attribution_window_days", "").strip()
    try:
        days = int(raw_days)
    except ValueError:
        raise ValueError(
            f"attribution window must be a whole number of days, got {raw_days!r}"
        ) from None
    origins = form.get("origins", "").splitlines()
    return origins, {
        "attribution_window_days": days,
        "counting_statuses": tuple(form.getlist("counting_statuses")) or ("",),
        "consent_required": form.get("consent_required") == "on",
        "count_browser_revenue": form.get("count_browser_revenue") == "on",
        "global_name": form.get("global_name", "").strip(),
        "tag_path": form.get("tag_path", "").strip(),  # empty: no second path
        "time_zone": form.get("time_zone", "").strip(),
    }


@bp.post("/sites/<site_id>/settings")
@require_site("owner")
def save_settings(site: Site) -> Any:
    """Save the settings form: all of it, or nothing and a 400 page saying which field."""
    s = services()
    try:
        origins, changes = _changes(request.form)
        site_rules.update_settings(s.engine, site.id, origins=origins, **changes)
    except ValueError as exc:
        return _page(site, 400, error=str(exc), form=request.form)
    with s.engine.begin() as conn:  # a new time zone: the overview's days are recounted
        rollups.sync_zone(conn, site.id)
    s.sites.forget(site.id)
    flash("Settings saved.")
    return redirect(url_for("dashboard.settings", site_id=site.id), 303)


@bp.post("/sites/<site_id>/settings/secret-key")
@require_site("owner")
def rotate_secret_key(site: Site) -> Any:
    """Make a new secret key and show it once; the old one works for the chosen grace."""
    s = services()
    try:
        grace = int(request.form.get("grace_seconds", ""))
    except ValueError:
        grace = -1
    if grace not in {seconds for seconds, _ in GRACE_CHOICES}:
        return _page(site, 400, error="grace period: pick one of the choices offered")
    new_key = site_rules.rotate_secret_key(s.engine, site.id, timedelta(seconds=grace))
    s.sites.forget(site.id)
    # Rendered, not redirected: the key must not be stored anywhere to show it later.
    return _page(site, new_secret_key=new_key)


@bp.post("/sites/<site_id>/settings/secret-key/end-grace")
@require_site("owner")
def end_secret_grace(site: Site) -> Any:
    """Stop the replaced secret key now."""
    s = services()
    site_rules.end_secret_grace(s.engine, site.id)
    s.sites.forget(site.id)
    flash("The previous secret key no longer works.")
    return redirect(url_for("dashboard.settings", site_id=site.id), 303)


@bp.post("/sites/<site_id>/settings/site-key")
@require_site("owner")
def rotate_site_key(site: Site) -> Any:
    """Give the site a new publishable key (its tag changes with it)."""
    s = services()
    site_rules.rotate_site_key(s.engine, site.id)
    s.sites.forget(site.id)
    flash("New site key made. Pages that embed the old key in a built tag need the new one.")
    return redirect(url_for("dashboard.settings", site_id=site.id), 303)
