"""The tag's fast path: ``GET /t/<site id>.js`` (and a site's own tag path) before Flask.

Serving the tag is a dictionary lookup and a few fixed headers, yet Flask's full
dispatch (request context, URL adapter, session, hooks, ``make_conditional``) cost about
three quarters of its CPU. :class:`TagFront` sits in front of the Flask app and answers
exactly those GETs itself from a response prepared once per site and tag version: the
bytes, the header list of the 200 and of the 304, built when the rendered tag changes
(:class:`~firsttag.tag.render.TagCache` renders again when the site's settings do).

It answers with the same status, headers and body as :mod:`firsttag.web.tags` (a test
compares them), and counts and logs each request through :mod:`firsttag.web.telemetry`
like every other. Anything else, and anything unusual on those paths (no site, a
failing store, a HEAD), goes to the Flask app unchanged, which answers as it always did.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from werkzeug.http import parse_etags

from firsttag.sites import Site
from firsttag.tag.render import TAG_CACHE_SITES, RenderedTag
from firsttag.web import telemetry
from firsttag.web.context import Services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_TAG_URL = re.compile(r"^/t/(st_[0-9a-f]{12})\.js$")
#: The endpoint labels and logged paths :mod:`firsttag.web.telemetry` gives these routes.
_ID_RULE = "/t/<name>.js"
_PATH_RULE = "/<path:path>"
_CUSTOM_ENDPOINT = "tags.serve_tag_at_custom_path"


class _Prepared:
    """One site's tag response, built once per rendered tag."""

    __slots__ = ("tag", "quoted_etag", "ok_headers", "not_modified_headers")

    def __init__(self, tag: RenderedTag, cache_seconds: int) -> None:
        self.tag = tag
        self.quoted_etag = f'"{tag.etag}"'
        common = [
            ("ETag", self.quoted_etag),
            ("Cache-Control", f"public, max-age={cache_seconds}"),
            ("X-Content-Type-Options", "nosniff"),
            ("Access-Control-Allow-Origin", "*"),  # public bytes; lets SRI use CORS
        ]
        self.ok_headers = [
            ("Content-Type", "application/javascript; charset=utf-8"),
            ("Content-Length", str(len(tag.body))),
            *common,
        ]
        self.not_modified_headers = common


class TagFront:
    """WSGI middleware answering tag GETs from prepared responses, the rest via ``app``."""

    def __init__(
        self, app: WSGIApplication, flask_app: Any, services: Services, cache_seconds: int
    ) -> None:
        self.app = app
        self.flask_app = flask_app
        self.services = services
        self.observer = telemetry.observer(flask_app)
        self.cache_seconds = cache_seconds
        self._prepared: dict[str, _Prepared] = {}
        self._date_second = -1
        self._date = ""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a tag GET here, pass anything else to the Flask app."""
        if environ.get("REQUEST_METHOD") != "GET":
            return self.app(environ, start_response)
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        try:
            found = self._site(path)
        except Exception:  # a failing store: Flask answers it as it answers every error
            found = None
        if found is None:
            return self.app(environ, start_response)
        site, rule, logged_path = found
        prepared = self._prepare(site)
        if self._not_modified(environ.get("HTTP_IF_NONE_MATCH"), prepared):
            status, headers, body = "304 NOT MODIFIED", prepared.not_modified_headers, b""
        else:
            status, headers, body = "200 OK", prepared.ok_headers, prepared.tag.body
        # Flask adds these two after its hooks; the prepared list stays shared and unchanged.
        start_response(status, [*headers, ("Date", self._http_date()), _NO_REFERRER])
        self.observer.observe(
            rule, "GET", int(status[:3]), time.perf_counter() - started, logged_path, site.id
        )
        return [body]

    @staticmethod
    def _not_modified(condition: str | None, prepared: _Prepared) -> bool:
        # The browser's usual header is exactly our quoted ETag; anything else (weak, a
        # list, "*") is compared the way werkzeug's make_conditional compares it.
        if condition is None:
            return False
        return condition == prepared.quoted_etag or parse_etags(condition).contains_weak(
            prepared.tag.etag
        )

    def _site(self, path: str) -> tuple[Site, str, str] | None:
        """The site whose tag ``path`` is, with the route's label and logged path."""
        matched = _TAG_URL.match(path)
        if matched is not None:
            site = self.services.sites.by_id(matched[1])
            return (site, _ID_RULE, path) if site is not None else None
        if not path.endswith(".js") or path.startswith(("/t/", "/api/")):
            return None
        site = self.services.sites.by_tag_path(path)
        # Another route of the app (a static file, a page) wins over the catch-all, as in
        # Flask's own routing: answer here only what Flask would route to the tag.
        if site is None or self._endpoint(path) != _CUSTOM_ENDPOINT:
            return None
        return site, _PATH_RULE, _PATH_RULE

    def _endpoint(self, path: str) -> str | None:
        try:
            endpoint, _ = self.flask_app.url_map.bind("").match(path, "GET")
        except Exception:  # not found, method not allowed, a redirect: not ours
            return None
        return str(endpoint)

    def _prepare(self, site: Site) -> _Prepared:
        tag = self.services.tags.get(site)
        prepared = self._prepared.get(site.id)
        if prepared is None or prepared.tag is not tag:
            prepared = _Prepared(tag, self.cache_seconds)
            if len(self._prepared) >= TAG_CACHE_SITES:
                self._prepared.clear()  # rare (thousands of sites); rebuilt on demand
            self._prepared[site.id] = prepared
        return prepared

    def _http_date(self) -> str:
        now = int(time.time())
        if now != self._date_second:  # one formatting per second, not per request
            self._date, self._date_second = formatdate(now, usegmt=True), now
        return self._date


_NO_REFERRER = ("Referrer-Policy", "no-referrer")
