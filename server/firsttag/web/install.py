"""The install page of a site: the snippet with SRI, GTM downloads, forms, back-end examples.

Open with the secret key (``Authorization: Bearer sk_…``) or with the signed link that
``firsttag sites create`` prints (:mod:`firsttag.tag.install`). Only the
publishable key appears on the page.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint, Response, request
from jinja2 import Environment, FileSystemLoader, select_autoescape

from firsttag.endpoints import SERVER_KINDS
from firsttag.sites import Site
from firsttag.tag.install import linked_site_id
from firsttag.tag.render import snippet, templates_dir
from firsttag.web.context import services
from firsttag.web.errors import APIError
from firsttag.web.requests import secret_site

bp = Blueprint("install", __name__)


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir()), autoescape=select_autoescape(["html", "j2"])
    )


def _examples(site: Site, base: str) -> list[dict[str, Any]]:
    # One example per server-side endpoint of the registry that declares one.
    env_key = "process.env.FIRSTTAG_SECRET_KEY"  # a reference, never the key itself
    out = []
    for endpoint in SERVER_KINDS:
        if endpoint.example is None:
            continue
        title, path, body = endpoint.summary, endpoint.path, endpoint.example
        url = base + path
        pretty = json.dumps(body, indent=2)
        out.append(
            {
                "title": title,
                "code": [
                    (
                        "Node.js",
                        f"await fetch('{url}', {{\n  method: 'POST',\n  headers: {{\n"
                        f"    'Content-Type': 'application/json',\n"
                        f"    'Authorization': 'Bearer ' + {env_key}\n  }},\n"
                        f"  body: JSON.stringify({pretty})\n}});",
                    ),
                    (
                        "Python",
                        f"import os, requests\nrequests.post(\n    '{url}',\n    json={pretty},\n"
                        "    headers={'Authorization': 'Bearer ' + "
                        "os.environ['FIRSTTAG_SECRET_KEY']},\n)",
                    ),
                    (
                        "cURL",
                        f"curl -X POST {url} \\\n  -H 'Content-Type: application/json' \\\n"
                        '  -H "Authorization: Bearer $FIRSTTAG_SECRET_KEY" \\\n'
                        f"  -d '{json.dumps(body)}'",
                    ),
                ],
            }
        )
    return out


@bp.get("/sites/<site_id>/install")
def install_page(site_id: str) -> Response:
    """The install page (secret key, or the signed link from ``sites create``)."""
    s = services()
    token = request.args.get("token")
    if token is not None:
        signed_id = linked_site_id(token, s.config.secret_key)
        if signed_id is None:
            raise APIError(401, "invalid_link", "this install link is invalid or expired")
        site = s.sites.by_id(site_id) if signed_id == site_id else None
    else:
        site = secret_site()
        site = site if site.id == site_id else None
    if site is None:
        raise APIError(404, "unknown_site", "no such site")
    base = s.config.public_url  # never the request's Host: people copy from this page
    integrity = s.tags.get(site).integrity  # the bytes /t/<id>.js serves, so SRI matches
    script = snippet(site, base, integrity)
    html = (
        _environment()
        .get_template("install.html.j2")
        .render(
            site=site,
            script_tag=script,
            public_url=base,
            examples=_examples(site, base),
            gtm={
                "custom_html": f"{base}/gtm/{site.id}/custom-html",
                "template": f"{base}/gtm/{site.id}/template.tpl",
                "container": f"{base}/gtm/{site.id}/container.json",
            },
        )
    )
    response = Response(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response
