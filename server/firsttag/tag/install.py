"""Signed, expiring links to a site's install page: made by the CLI, checked by the page.

Pure: no Flask. The page itself is :mod:`firsttag.web.install`.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

from firsttag.sites import Site

#: How long a link opens the page, in seconds.
LINK_MAX_AGE = 7 * 24 * 3600


def _links(secret: str) -> URLSafeTimedSerializer:
    # The salt keeps these tokens from being valid for any other use of the server secret.
    return URLSafeTimedSerializer(secret, salt="firsttag.install-link")


def install_link(site: Site, base_url: str, server_secret: str) -> str:
    """A signed, expiring link to the install page of ``site``."""
    token = _links(server_secret).dumps(site.id)
    return f"{base_url.rstrip('/')}/sites/{site.id}/install?token={token}"


def linked_site_id(token: str, server_secret: str) -> str | None:
    """The site id a link's ``token`` was signed for; None when forged or expired."""
    try:
        return _links(server_secret).loads(token, max_age=LINK_MAX_AGE)
    except BadSignature:
        return None
