"""The HTTP API: browser endpoints (publishable key) and read endpoints (secret key).

Handlers validate, authenticate and hand events to the Redis buffer; they never write to
the database. Browser endpoints answer CORS only for the origins of the site the key
belongs to; a request whose ``Origin`` a site does not allow is refused with 403.

A CORS preflight carries no body and no ``Authorization``, so it cannot name its site the
way the request after it does. The tag never causes one (it posts ``text/plain``); a page
that calls ``/sessions/convert`` with ``fetch`` does, and names its site on the URL:
``/api/v1/sessions/convert?siteKey=pk_…``. Such a preflight is answered only for that
site's origins. The seeds' URL without ``?siteKey=`` keeps working: its preflight is
answered for an origin any site allows, and the request itself is then refused (403, no
CORS headers) unless its key's site allows the origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, request

from firsttag import conversions, schemas, store, wire
from firsttag.admission import conversion_event
from firsttag.apispec.openapi import document
from firsttag.bots import is_bot
from firsttag.sites import Site
from firsttag.web import firstparty
from firsttag.web.context import services
from firsttag.web.errors import APIError, field_error
from firsttag.web.ratelimit import (
    charge_client,
    charge_site,
    client_limit,
    record,
    site_limit,
)
from firsttag.web.requests import bearer, int_arg, json_body, secret_site

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Endpoints a page may call cross-origin. Everything else is for servers and answers no
# CORS headers at all, so a browser can never read it.
_BROWSER_ENDPOINTS = {"api.register_session", "api.convert_session", "api.beacon"}
# Endpoints that charge their rate limits and queue their event in one Redis call.
_LEAN_ENDPOINTS = {"api.register_session", "api.beacon"}
_PREFLIGHT_MAX_AGE = "600"
#: The environ key where web/beaconfront.py, which answers accepted beacons and session
#: registrations before Flask, leaves the outcome of the admit call it already made
#: for a request it hands over (a refused verdict, BacklogFull, a RedisError).
ADMITTED = "firsttag.admitted"
# Not CORS-safelisted, so a page could not read when to retry without this.
EXPOSED_HEADERS = "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"


def _check_origin(site: Site) -> None:
    origin = request.headers.get("Origin")
    g.site = site
    if origin is not None and not site.allows_origin(origin):
        raise APIError(403, "origin_not_allowed", "this origin is not allowed for the site")


def _publishable_site(site_key: str, field: str) -> Site:
    site = services().sites.by_site_key(site_key)
    if site is None:
        raise APIError(401, "invalid_site_key", f"{field} is not a valid site key")
    _check_origin(site)
    charge_site("browser", site)
    return site


def _browser_site(site_key: str, field: str) -> Site:
    # The lean path's lookup: the limits are charged later, with the event (see _admit).
    site = services().sites.by_site_key(site_key)
    if site is None:
        raise APIError(401, "invalid_site_key", f"{field} is not a valid site key")
    _check_origin(site)
    return site


@contextmanager
def _charged_if_refused() -> Iterator[None]:
    """Charge the client's limit for a request refused before :func:`_admit`.

    An accepted request pays its limits inside the one Redis call that queues its event;
    one refused earlier (bad body, unknown key, foreign origin) still spends the client's
    limit, so a flood of bad requests is cut off like any other, and a client already
    over its limit gets 429 whatever it sent.
    """
    try:
        yield
    except Exception:
        charge_client(request.remote_addr)
        raise


def _admit(site: Site, event: wire.Event) -> None:
    """The lean path's one Redis call: charge the client's and the site's limits, queue.

    Every browser event (sessions, beacon) that web/beaconfront.py did not accept passes
    here, once its site is known (``g.site``); a per-event hook must go here and in
    beaconfront alike. The request then leaves through :func:`_cors` like any other.
    When beaconfront already made the call and it refused, its outcome is answered
    instead: the limits are not charged twice and nothing is queued.
    """
    limits = [client_limit(request.remote_addr), site_limit("browser", site)]
    decided = request.environ.pop(ADMITTED, None)
    if isinstance(decided, Exception):
        raise decided
    record(decided if decided is not None else services().buffer.admit(limits, event))


def _origin_allowed(origin: str) -> bool:
    """Whether ``origin`` may read an answer: the URL's ``?siteKey=`` site, else any site."""
    site_key = request.args.get("siteKey")
    if site_key is None:
        return services().sites.knows_origin(origin)
    site = services().sites.by_site_key(site_key)
    return site is not None and site.allows_origin(origin)


def _preflight() -> Response:
    origin = request.headers.get("Origin")
    if not origin or not _origin_allowed(origin):
        raise APIError(403, "origin_not_allowed", "this origin is not allowed for the site")
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
    return response


@bp.after_request
def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and request.endpoint in _BROWSER_ENDPOINTS:
        site: Site | None = g.get("site")
        allowed = site.allows_origin(origin) if site else _origin_allowed(origin)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.vary.add("Origin")
    return response


@bp.before_request
def _limit_client() -> None:
    # Before the body is read: a flooding client costs one Redis call, no parsing. The
    # lean endpoints charge it with their event instead (see _admit), in the same call.
    if request.endpoint in _BROWSER_ENDPOINTS and (
        request.method == "OPTIONS" or request.endpoint not in _LEAN_ENDPOINTS
    ):
        charge_client(request.remote_addr)


# -- browser endpoints -------------------------------------------------------------------


@bp.route("/sessions", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def register_session() -> Any:
    """Register a tab session and return its signed session key (``cl_sk``)."""
    if request.method == "OPTIONS":
        return _preflight()
    with _charged_if_refused():
        body = schemas.parse(schemas.SessionRegistration, json_body())
        site = _browser_site(body.siteKey, "siteKey")
    s = services()
    session_key = s.session_keys.issue(site.id, body.sessionId)
    ids = firstparty.identify(site, body.visitorId, body.clickId)  # first-party cookie wins
    user_agent = request.headers.get("User-Agent")
    _admit(site, session_event(site, body, ids.visitor_id, ids.click_id, user_agent))
    return firstparty.answer(site, ids, {"sessionKey": session_key, "sessionId": body.sessionId})


@bp.route("/sessions/convert", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def convert_session() -> Any:
    """Mark a session verified (ClickLens). Idempotent: the first verification time is kept."""
    if request.method == "OPTIONS":
        return _preflight()
    token = bearer()
    if token is None:
        raise APIError(401, "missing_site_key", "Authorization: Bearer <site key> is required")
    s = services()
    site, bucket = s.sites.by_site_key(token), "browser"
    if site is None and request.headers.get("Origin") is None:
        site, bucket = s.sites.by_secret_key(token), "server"  # back ends may use either key
    if site is None:
        raise APIError(401, "invalid_site_key", "the site key is not valid")
    _check_origin(site)
    charge_site(bucket, site)
    body = schemas.parse(schemas.SessionConvert, json_body())
    opened = s.session_keys.open(body.sessionKey)
    if opened is None or opened[0] != site.id:
        raise APIError(404, "session_not_found", "no session found for this sessionKey")
    s.buffer.push(wire.Event(site.id, store.utcnow(), wire.Verification(opened[1])))
    return {"success": True}


@bp.route("/beacon", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def beacon() -> Any:
    """Accept a browser conversion from ``firsttag.convert()`` (text/plain JSON, no preflight)."""
    if request.method == "OPTIONS":
        return _preflight()
    with _charged_if_refused():
        body = schemas.parse(schemas.BrowserConversion, json_body())
        site = _browser_site(body.siteKey, "siteKey")
        session_id = body.sessionId
        if body.sessionKey:
            opened = services().session_keys.open(body.sessionKey)
            if opened is None or opened[0] != site.id:
                raise field_error("sessionKey", "not a session key of this site")
            session_id = opened[1]
        bound = site.settings.max_browser_value
        if body.value is not None and body.value > bound:
            # Refused, not clamped: a clamped value would be stored as if the page sent it.
            raise field_error("value", f"must be at most {bound} (the site's max browser value)")
    _admit(site, beacon_event(site, body, session_id))
    return {"accepted": True, "id": body.id}, 202


# -- the events of the browser endpoints (web/beaconfront.py builds them here too) ------


def session_event(
    site: Site,
    body: schemas.SessionRegistration,
    visitor_id: str,
    click_id: str | None,
    user_agent: str | None,
) -> wire.Event:
    """The event of a session registration: its IDs, page, user agent (cut) and bot flag."""
    session = wire.Session(
        session_id=body.sessionId,
        visitor_id=visitor_id,
        click_id=click_id,
        url=body.url,
        referrer=body.referrer,
        user_agent=(user_agent or "")[:512] or None,
        bot=is_bot(user_agent, body.webdriver),
    )
    return wire.Event(site.id, store.utcnow(), session)


def beacon_event(site: Site, body: schemas.BrowserConversion, session_id: str | None) -> wire.Event:
    """The event of a browser conversion, received now."""
    received_at = store.utcnow()
    outcome = conversions.from_beacon(body, session_id, received_at)
    # The tag's ID makes a re-send identical, so the store's unique key is all it needs.
    return conversion_event(site.id, outcome, received_at)


# -- secret-key endpoints ----------------------------------------------------------------


@bp.get("/sessions/<session_key>")
def get_session(session_key: str) -> Any:
    """A stored session with its verification time (null until verified)."""
    site = secret_site()
    charge_site("reads", site)
    s = services()
    opened = s.session_keys.open(session_key)
    found = (
        store.get_session(s.engine, site.id, opened[1]) if opened and opened[0] == site.id else None
    )
    if found is None:
        raise APIError(404, "session_not_found", "no stored session for this key")
    return found


@bp.get("/conversions")
def list_conversions() -> Any:
    """Stored conversions, newest first; pass ``cursor`` from one page to get the next."""
    site = secret_site()
    charge_site("reads", site)
    limit = int_arg("limit", default=50, low=1, high=500)
    cursor = int_arg("cursor", default=None, low=1, high=2**62)
    items, next_cursor = store.list_conversions(services().engine, site.id, limit, cursor)
    return {"data": items, "nextCursor": next_cursor}


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document, generated from :mod:`firsttag.schemas`."""
    return document()
