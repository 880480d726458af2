"""The browser tag: rendered per site from ``tag_templates/`` and served with an ETag."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import services
from .errors import APIError
from .sites import Site

bp = Blueprint("tags", __name__)

_SITE_ID = re.compile(r"^st_[0-9a-f]{12}$")
TAG_CACHE_SECONDS = 300


def templates_dir() -> Path:
    """Where the tag templates are: the source tree, or inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "tag_templates", here / "tag_templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("tag_templates directory not found")


@cache
def _environment() -> Environment:
    # Not HTML autoescaping: the output is JavaScript, and every value is passed through
    # |tojson, which is the escaping that context needs.
    return Environment(
        loader=FileSystemLoader(templates_dir()),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
    )


def render_tag(site: Site, base_url: str) -> bytes:
    """The tag of ``site`` talking to the server at ``base_url``."""
    template = _environment().get_template("tag.js.j2")
    return template.render(api_url=base_url.rstrip("/"), site_key=site.site_key).encode()


def tag_url(site: Site, base_url: str) -> str:
    """Where the tag of ``site`` is served."""
    return f"{base_url.rstrip('/')}/t/{site.id}.js"


def snippet(site: Site, base_url: str) -> str:
    """The ``<script>`` line a site owner pastes into their pages."""
    return f'<script src="{tag_url(site, base_url)}" async></script>'


@bp.get("/t/<name>.js")
def serve_tag(name: str) -> Any:
    """``GET /t/<site id>.js``: the site's tag, cacheable, 304 on a matching ETag."""
    site = services().sites.by_id(name) if _SITE_ID.match(name) else None
    if site is None:
        raise APIError(404, "unknown_site", "no tag is served at this address")
    body = render_tag(site, services().config.public_url or request.host_url)
    response = Response(body, content_type="application/javascript; charset=utf-8")
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.cache_control.public = True
    response.cache_control.max_age = TAG_CACHE_SECONDS
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public bytes; lets SRI use CORS
    return response.make_conditional(request)
