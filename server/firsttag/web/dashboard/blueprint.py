"""The dashboard's blueprint, its security headers and its HTML error pages.

Every dashboard module adds its routes to :data:`bp`. Responses get a strict Content
Security Policy (only this server's own stylesheet and scripts, no inline code, no other
host), are never framed, and HTML is never cached. Errors raised in a dashboard view are
answered as a page (403: "you do not have access", 404, 400 for a refused form), not as
the API's JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from firsttag import users

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

#: The tabs of a site's pages: (label, endpoint, least role). A tab shows only when its
#: endpoint exists and the user's role allows it, so a page lists itself here when added.
SITE_TABS: tuple[tuple[str, str, str], ...] = (
    ("Overview", "dashboard.overview", "viewer"),
    ("Conversions", "dashboard.conversions", "viewer"),
    ("Settings", "dashboard.settings", "owner"),
)

#: Only this origin's files; no inline script or style, no plugin, no frame, no base URL.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def site_tabs(site_id: str, role: str | None) -> list[dict[str, Any]]:
    """The tabs of :data:`SITE_TABS` this role may open (label, url, current or not)."""
    return [
        {
            "label": label,
            "url": url_for(endpoint, site_id=site_id),
            "current": request.endpoint == endpoint,
        }
        for label, endpoint, least in SITE_TABS
        if endpoint in current_app.view_functions and users.allows(role, least)
    ]


@bp.context_processor
def _layout() -> dict[str, Any]:
    # base.html draws a site's tabs from this; g.role is set by require_site.
    return {"site_tabs": lambda site_id, role=None: site_tabs(site_id, role or g.get("role"))}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Same-origin referrers let Flask-WTF check where a form over HTTPS came from;
    # nothing leaves this origin (the app's default elsewhere is no-referrer).
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


_MESSAGES = {
    400: ("Request refused", "The request could not be understood."),
    403: ("No access", "You do not have access to this page. Ask an owner of the site."),
    404: ("Not found", "There is no such page."),
    405: ("Not allowed", "This page does not accept that request."),
    429: ("Too many attempts", "Too many attempts. Wait a minute and try again."),
}


def error_page(status: int, message: str | None = None) -> tuple[str, int]:
    """An HTML error page with ``status``, in the dashboard's layout."""
    title, default = _MESSAGES.get(status, ("Something went wrong", "Please try again."))
    return (
        render_template("dashboard/error.html", title=title, message=message or default),
        status,
    )


@bp.errorhandler(CSRFError)
def _csrf_refused(err: CSRFError) -> Any:
    return error_page(
        400,
        "This form was refused: it has expired or did not come from this dashboard. "
        "Go back, reload the page and try again.",
    )


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Any:
    status = err.code or 500
    message = err.description if status in (400, 403, 404) and _custom(err) else None
    response = error_page(status, message)
    if status == 405:
        return (*response, {"Allow": ", ".join(err.valid_methods or [])})  # type: ignore[attr-defined]
    return response


def _custom(err: HTTPException) -> bool:
    # abort(403, "…") sets a description of ours; Werkzeug's defaults talk to developers.
    return err.description != type(err).description


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Any:
    log.exception("unhandled error in a dashboard page")
    return error_page(500, "Something went wrong on the server. Please try again.")
