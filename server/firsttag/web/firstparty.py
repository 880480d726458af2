"""First-party mode: the visitor and click IDs kept in an HttpOnly cookie of the site itself.

A site in first-party mode (``Settings.first_party_path``, e.g. ``/ft``) proxies that path
of its own origins to this server (README: nginx and Caddy). Its tag then talks to
``/ft/api/v1`` on the page's own origin, so the session registration is a same-origin
request and its answer can set a cookie of the site. Safari caps what scripts write
(cookies at 7 days, 24 hours after a click from a known tracker; all script storage wiped
after 7 days without a visit), but not a cookie that the site's own server sets in an HTTP
response from the site's own IP addresses: the proxy gives exactly that.

When the tag's storage was wiped it registers with a fresh visitor ID; the cookie's visitor
ID wins. The session is stored with it, and the answer hands it (and the click ID) back to
the tag, which keeps them, so ``getIdentity()`` and hidden fields go on as before.

The cookie, one per site: ``__Host-ft_<site id>`` with ``Secure; HttpOnly; SameSite=Lax;
Path=/; Max-Age=34560000`` (400 days, the longest Chrome keeps one). Its value is
``[site id, visitor ID, click ID]`` signed with the server secret (itsdangerous, a salt of
its own), so nobody can write IDs into it, and a cookie made for one site means nothing
to another. What a hostile party can try, and why it fails:

- Another site's page posting to this path: its ``Origin`` is not the site's (403 before
  anything is read), the browser does not send a ``SameSite=Lax`` cookie with a cross-site
  POST, and no CORS header lets that page read the answer. Only a request the browser marks
  ``Sec-Fetch-Site: same-origin`` (when it sends the header) and whose ``Origin`` the site
  allows reads or sets the cookie; a request without ``Origin`` (not a browser's) neither.
- A sibling subdomain planting its own, validly signed cookie (to pin its click ID on the
  site's visitors): the ``__Host-`` prefix makes browsers refuse a cookie with a ``Domain``,
  from a subdomain or over http, so only this origin's own responses can set it. This does
  not cover the script-readable ``dub_id`` cookie, which is shared with subdomains by
  Dub's design: a hostile subdomain can set it, and the tag reports that click as the
  visit's, which the registration then signs into this cookie (README, first-party mode).
- Script on the page itself (XSS, a third-party script) can post the registration and read
  the IDs from the answer, as it can read ``localStorage``: the IDs are identifiers, not
  credentials, and no secret key ever reaches a browser. ``HttpOnly`` keeps the signed value
  itself out of reach.

Plain http: browsers drop a ``Secure`` cookie sent over http (Safari even on localhost), and
``__Host-`` requires ``Secure``. On a loopback origin (``http://localhost``, ``127.0.0.1``,
``[::1]``: development, tests) the cookie is ``ft_<site id>`` without ``Secure``: nothing
leaves the machine. Any other http origin gets no cookie: every hop on the network could
read or plant it there. A site in consent mode gets none either: the tag registers before
``firsttag.consent(true)``, and nothing may be stored before it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Response, jsonify, request
from itsdangerous import BadSignature, URLSafeSerializer

from firsttag.sites import Site
from firsttag.web.context import services

#: 400 days in seconds: the longest lifetime Chrome keeps (RFC 6265bis caps it there too).
COOKIE_MAX_AGE = 400 * 24 * 3600


@dataclass(frozen=True)
class Ids:
    """The visitor and click ID a session registration is stored and answered with."""

    visitor_id: str
    click_id: str | None


@dataclass(frozen=True)
class _Cookie:
    name: str
    secure: bool


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie(site: Site) -> _Cookie | None:
    """The cookie this request may read and set for ``site``, or None (see the module)."""
    s = site.settings
    if not s.first_party_path or s.consent_required:
        return None
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return None
    origin = request.headers.get("Origin")
    if origin is None or not site.allows_origin(origin):
        return None
    parts = urlsplit(origin)
    if parts.scheme == "https":
        return _Cookie(f"__Host-ft_{site.id}", True)
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        return _Cookie(f"ft_{site.id}", False)
    return None


def _signer() -> URLSafeSerializer:
    # The salt keeps these values from being valid session keys or install links.
    return URLSafeSerializer(services().config.secret_key, salt="firsttag.first-party-ids")


def identify(site: Site, visitor_id: str, click_id: str | None) -> Ids:
    """The IDs to store a registration of ``site`` with.

    The tag's own (``visitor_id``, ``click_id``), except in first-party mode with a valid
    cookie of this site: then its visitor ID, and its click ID when the tag has none.
    """
    cookie = _cookie(site)
    raw = request.cookies.get(cookie.name) if cookie else None
    if raw is None:
        return Ids(visitor_id, click_id)
    try:
        value = _signer().loads(raw)
    except (BadSignature, ValueError, UnicodeError):
        return Ids(visitor_id, click_id)
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != site.id
        or not isinstance(value[1], str)
        or not isinstance(value[2], str | None)
    ):
        return Ids(visitor_id, click_id)
    return Ids(value[1], click_id or value[2])


def answer(site: Site, ids: Ids, body: dict[str, Any]) -> Response:
    """The JSON answer: ``body`` with ``visitorId`` and ``clickId`` from ``ids``, which the
    tag keeps; in first-party mode (when this request allows it) also the cookie."""
    response = jsonify({**body, "visitorId": ids.visitor_id, "clickId": ids.click_id})
    cookie = _cookie(site)
    if cookie is not None:
        response.set_cookie(
            cookie.name,
            _signer().dumps([site.id, ids.visitor_id, ids.click_id]),
            max_age=COOKIE_MAX_AGE,
            path="/",
            secure=cookie.secure,
            httponly=True,
            samesite="Lax",
        )
    return response
