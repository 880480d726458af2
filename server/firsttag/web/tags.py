"""``GET /t/<site id>.js`` and a site's own tag path: the rendered tag, with an ETag.

The bytes come from :mod:`firsttag.tag.render` through the app's
:class:`~firsttag.tag.render.TagCache`; this module only finds the site and answers.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError

bp = Blueprint("tags", __name__)

_SITE_ID = re.compile(r"^st_[0-9a-f]{12}$")
TAG_CACHE_SECONDS = 300


@bp.get("/t/<name>.js")
def serve_tag(name: str) -> Any:
    """``GET /t/<site id>.js``: the site's tag, cacheable, 304 on a matching ETag."""
    site = services().sites.by_id(name) if _SITE_ID.match(name) else None
    return _tag_response(site)


@bp.get("/<path:path>")
def serve_tag_at_custom_path(path: str) -> Any:
    """The tag at a site's own ``tag_path`` (a name that ad blockers do not list)."""
    site = services().sites.by_tag_path("/" + path) if path.endswith(".js") else None
    if site is None:
        raise NotFound()  # any other unknown path: the ordinary JSON 404
    return _tag_response(site)


def _tag_response(site: Site | None) -> Any:
    if site is None:
        raise APIError(404, "unknown_site", "no tag is served at this address")
    tag = services().tags.get(site)
    response = Response(tag.body, content_type="application/javascript; charset=utf-8")
    response.set_etag(tag.etag)
    response.cache_control.public = True
    response.cache_control.max_age = TAG_CACHE_SECONDS
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public bytes; lets SRI use CORS
    return response.make_conditional(request)
