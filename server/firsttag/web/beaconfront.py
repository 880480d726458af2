"""The ingest fast path: accepted beacons and session registrations answered before Flask.

A beacon is one small JSON body, one validation and one Redis call, yet Flask's request
and response machinery (request context, URL adapter, hooks, ``jsonify``, header lists)
was about a third of its CPU. :class:`BeaconFront` sits in front of the Flask app and
handles exactly ``POST /api/v1/beacon`` and ``POST /api/v1/sessions`` (first-party mode's
``/ft/api/v1/…`` reaches the server as the same paths: the proxy strips its prefix) when
the request is plainly good, with the same code as :mod:`firsttag.web.api`: the same body
bounds (:func:`firsttag.bounds.loads`), models (:func:`firsttag.schemas.parse`), site
lookup, origin check, session keys, makers and the one Redis call that charges the rate
limits and queues the event (:meth:`~firsttag.events.buffer.EventBuffer.admit`, through
group commit). It answers only once that call's reply arrived, so a 2xx means what it
always meant: the event is in Redis.

Everything else goes to the Flask app unchanged, with the body bytes already read put back
as a new ``wsgi.input``: preflights, a query string, a missing or oversized
``Content-Length``, bad JSON, a refused field, an unknown key, a foreign origin, a session
key of another site, a value over the site's bound, a site in first-party mode (its cookie
is :mod:`firsttag.web.firstparty`'s). Flask then does everything again and answers, and
charges the client's limit for the refusal, as it always did.

A refusal of the Redis call itself (a rate limit, a full backlog, Redis down) cannot be
repeated: the limits may already be spent. The front hands the request over with the
call's outcome in the environ (:data:`firsttag.web.api.ADMITTED`); Flask's handler then
answers with that outcome instead of calling Redis again, so the 429's or 503's body,
headers and counters are Flask's own.

Accepted answers carry the same status, headers and body as Flask's (``tests/
test_beaconfront.py`` compares them, and the queued events, for valid and hostile bodies),
and count and log the request through :mod:`firsttag.web.telemetry` like every other.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from firsttag import bounds, metrics, schemas, wire
from firsttag.limiter import PERIOD_MS, Limit, Verdict, client_subject
from firsttag.sites import Site
from firsttag.web import telemetry
from firsttag.web.api import ADMITTED, EXPOSED_HEADERS, beacon_event, session_event
from firsttag.web.context import Services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BEACON_PATH = "/api/v1/beacon"
SESSIONS_PATH = "/api/v1/sessions"


class _Refer(Exception):
    """Not plainly good: Flask answers this request (before any Redis call)."""


class _Accepted:
    """What an accepted request answers: status, body, site, the rate limits' verdict."""

    __slots__ = ("status", "body", "site", "verdict")

    def __init__(self, status: str, body: dict[str, Any], site: Site, verdict: Verdict) -> None:
        self.status = status
        self.body = body
        self.site = site
        self.verdict = verdict


class BeaconFront:
    """WSGI middleware answering accepted beacons and session registrations itself.

    ``app`` is the WSGI app behind it (Flask's, possibly through other fronts),
    ``flask_app`` the Flask app whose telemetry counts the requests answered here.
    """

    def __init__(self, app: WSGIApplication, flask_app: Any, services: Services) -> None:
        self.app = app
        self.services = services
        self.observer = telemetry.observer(flask_app)
        self.max_body = services.config.max_body_bytes
        self._accepted = metrics.EVENTS.labels("accepted")
        self._handlers: dict[str, Callable[[WSGIEnvironment, bytes], _Accepted | None]] = {
            BEACON_PATH: self._beacon,
            SESSIONS_PATH: self._session,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer an accepted beacon or registration here, pass anything else to ``app``."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        handler = self._handlers.get(path)
        if handler is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        raw = self._body(environ)
        if raw is None:
            return self.app(environ, start_response)
        # From here on the body has been read: every hand-over puts it back first.
        try:
            accepted = handler(environ, raw)
        except Exception:  # _Refer, or anything unforeseen: Flask answers it as it would
            accepted = None
        if accepted is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.app(environ, start_response)
        return self._answer(environ, start_response, path, accepted, started)

    def _body(self, environ: WSGIEnvironment) -> bytes | None:
        """The request body, or None (unread) when Flask should judge its length."""
        length = environ.get("CONTENT_LENGTH", "")
        if not (length.isascii() and length.isdigit()) or len(length) > 9:
            return None  # absent (chunked), not a number, or far too large
        size = int(length)
        if size == 0 or size > self.max_body:
            return None  # Flask's 400 for an empty body, its 413 for a large one
        stream = environ["wsgi.input"]
        raw: bytes = stream.read(size)
        while len(raw) < size:  # a server may hand the body over in pieces
            more = stream.read(size - len(raw))
            if not more:
                break
            raw += more
        if len(raw) < size:  # the client went away: Flask meets the same short stream
            environ["wsgi.input"] = io.BytesIO(raw)
            return None
        return raw

    # -- the two endpoints, as web/api.py's handlers, minus refusals -----------------------

    def _beacon(self, environ: WSGIEnvironment, raw: bytes) -> _Accepted | None:
        body = schemas.parse(schemas.BrowserConversion, bounds.loads(raw))
        site = self._site(environ, body.siteKey)
        session_id = body.sessionId
        if body.sessionKey:
            opened = self.services.session_keys.open(body.sessionKey)
            if opened is None or opened[0] != site.id:
                raise _Refer
            session_id = opened[1]
        if body.value is not None and body.value > site.settings.max_browser_value:
            raise _Refer
        verdict = self._admit(environ, site, beacon_event(site, body, session_id))
        if verdict is None:
            return None
        return _Accepted("202 ACCEPTED", {"accepted": True, "id": body.id}, site, verdict)

    def _session(self, environ: WSGIEnvironment, raw: bytes) -> _Accepted | None:
        body = schemas.parse(schemas.SessionRegistration, bounds.loads(raw))
        site = self._site(environ, body.siteKey)
        if site.settings.first_party_path:
            raise _Refer  # the first-party cookie is read and set by Flask's handler
        session_key = self.services.session_keys.issue(site.id, body.sessionId)
        event = session_event(
            site, body, body.visitorId, body.clickId, environ.get("HTTP_USER_AGENT")
        )
        verdict = self._admit(environ, site, event)
        if verdict is None:
            return None
        answer = {
            "sessionKey": session_key,
            "sessionId": body.sessionId,
            "visitorId": body.visitorId,
            "clickId": body.clickId,
        }
        return _Accepted("200 OK", answer, site, verdict)

    def _site(self, environ: WSGIEnvironment, site_key: str) -> Site:
        site = self.services.sites.by_site_key(site_key)
        if site is None:
            raise _Refer
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not site.allows_origin(origin):
            raise _Refer
        return site

    def _admit(self, environ: WSGIEnvironment, site: Site, event: wire.Event) -> Verdict | None:
        """Charge the limits and queue ``event`` as web/api.py's ``_admit`` does.

        The verdict when the event was queued; otherwise None, with the outcome left in
        the environ for Flask's handler to answer.
        """
        config = self.services.config
        limits = [
            Limit("ip", client_subject(environ.get("REMOTE_ADDR")), config.rate_per_ip),
            Limit("browser", site.id, site.settings.browser_rate_per_minute or config.rate_browser),
        ]
        try:
            verdict = self.services.buffer.admit(limits, event)
        except Exception as exc:  # a full backlog, Redis down: Flask answers the same
            environ[ADMITTED] = exc
            return None
        if not verdict.allowed:
            environ[ADMITTED] = verdict
            return None
        return verdict

    # -- the answer, as Flask's jsonify and after-request hooks build it -------------------

    def _answer(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        accepted: _Accepted,
        started: float,
    ) -> Iterable[bytes]:
        # Flask's JSON provider outside debug mode: compact, ASCII, a final newline.
        payload = (json.dumps(accepted.body, separators=(",", ":")) + "\n").encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        origin = environ.get("HTTP_ORIGIN")
        if origin:  # allowed: _site refers a foreign origin to Flask
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
                ("Vary", "Origin"),
            ]
        verdict = accepted.verdict
        headers += [
            ("Referrer-Policy", "no-referrer"),
            ("RateLimit-Limit", str(verdict.limit)),
            ("RateLimit-Remaining", str(verdict.remaining)),
            ("RateLimit-Reset", str(verdict.reset_s)),
            ("RateLimit-Policy", f"{verdict.limit};w={PERIOD_MS // 1000}"),
        ]
        start_response(accepted.status, headers)
        self._accepted.inc()
        status = int(accepted.status[:3])
        self.observer.observe(
            path, "POST", status, time.perf_counter() - started, path, accepted.site.id
        )
        return [payload]
