"""``GET /gtm/<site id>/…``: the Google Tag Manager files of :mod:`firsttag.tag.gtm`."""

from __future__ import annotations

from flask import Blueprint, Response

from firsttag.tag.gtm import FILES
from firsttag.web.context import services
from firsttag.web.errors import APIError

bp = Blueprint("gtm", __name__, url_prefix="/gtm")


def _serve(site_id: str, name: str) -> Response:
    site = services().sites.by_id(site_id)
    if site is None:
        raise APIError(404, "unknown_site", "no such site")
    content_type, render = FILES[name]
    # The configured URL, never the request's Host: these files are pasted into GTM.
    response = Response(render(site, services().config.public_url), content_type=content_type)
    if name != "custom-html.html":
        response.headers["Content-Disposition"] = f'attachment; filename="firsttag-{name}"'
    return response


@bp.get("/<site_id>/custom-html")
def custom_html_view(site_id: str) -> Response:
    """The Custom HTML tag to paste."""
    return _serve(site_id, "custom-html.html")


@bp.get("/<site_id>/template.tpl")
def template_view(site_id: str) -> Response:
    """The Community Template file to import."""
    return _serve(site_id, "template.tpl")


@bp.get("/<site_id>/container.json")
def container_view(site_id: str) -> Response:
    """The container export to import (merge)."""
    return _serve(site_id, "container.json")
