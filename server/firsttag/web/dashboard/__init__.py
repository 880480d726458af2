"""The dashboard: server-rendered pages where site owners and viewers see their sites.

Modules, one job each:

- :mod:`.blueprint`: the blueprint ``dashboard`` (templates in ``templates/dashboard/``,
  static files at ``/dashboard/static/``), security headers (strict CSP: no inline script
  or style, nothing from another host) and HTML error pages (:func:`.blueprint.error_page`).
- :mod:`.auth`: login, logout, the session cookie, CSRF, and the access helpers
  ``require_site(role)``, ``login_required`` and ``current_user()``.
- :mod:`.formatting`: template filters for numbers, money and times.
- :mod:`.sites_page`: the sites a user may see, with today's numbers.
- :mod:`.settings_page`: a site's settings and keys (owners only).

A new page: a module that adds a route to ``bp`` with ``@require_site("viewer")``,
renders a template that ``{% extends "dashboard/base.html" %}``, is imported below, and
(for a tab in the site's navigation) is listed in :data:`.blueprint.SITE_TABS`.
Forms POST with ``<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">``.
"""

from __future__ import annotations

from flask import Flask

from firsttag.web.dashboard import (  # the report pages (issue 9, reports slice)
    auth,
    conversions_page,
    customer_page,
    exports_page,
    formatting,
    overview_page,
    settings_page,
    site_users_page,
    sites_page,
)
from firsttag.web.dashboard.blueprint import bp

__all__ = ["init_app"]

_PAGES = (
    formatting,
    settings_page,
    site_users_page,
    sites_page,
    overview_page,
    conversions_page,
    customer_page,
    exports_page,
)  # imported for the routes and filters they add to bp


def init_app(app: Flask) -> None:
    """Add the dashboard to ``app`` (after ``app.extensions["firsttag"]`` is set)."""
    auth.configure(app)
    app.register_blueprint(bp)
