"""The browser tag: rendered per site from ``tag_templates/`` and served with an ETag."""

from __future__ import annotations

import hashlib
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from calmjs.parse import es5
from calmjs.parse.unparsers.es5 import minify_print
from flask import Blueprint, Response, request
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from werkzeug.exceptions import NotFound

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


#: gzip -9 size the tag must stay within; enforced by a test and by ``firsttag build``.
TAG_BUDGET_GZIP = 1500


def render_tag(site: Site, base_url: str) -> bytes:
    """The minified tag of ``site`` talking to the server at ``base_url``.

    The same bytes are served at /t/<id>.js and written by ``firsttag build``.
    """
    s = site.settings
    return _render(site.site_key, s.global_name, s.consent_required, base_url.rstrip("/"))


@lru_cache(maxsize=1024)
def _render(site_key: str, global_name: str, consent: bool, base_url: str) -> bytes:
    # Minifying takes ~40 ms, so each variant is rendered once per process.
    source = (
        _environment()
        .get_template("tag.js.j2")
        .render(
            api_url=base_url + "/api/v1",
            site_key=site_key,
            global_name=global_name,
            consent=consent,
        )
    )
    # calmjs.parse: a real ES5 parser and printer that renames locals (mangling), keeps
    # the output ES5 for old browsers and GTM, and is pure Python (no Node at run time).
    return minify_print(es5(source), obfuscate=True, obfuscate_globals=False).encode()


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
    body = render_tag(site, services().config.public_url or request.host_url)
    response = Response(body, content_type="application/javascript; charset=utf-8")
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.cache_control.public = True
    response.cache_control.max_age = TAG_CACHE_SECONDS
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public bytes; lets SRI use CORS
    return response.make_conditional(request)
