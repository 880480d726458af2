"""What each request leaves behind: Prometheus counts, one JSON access-log line, ``/metrics``.

The path in the log and the ``endpoint`` label are built from the matched URL rule, with
only the site ID filled in: a raw path can carry a signed session key
(``/api/v1/sessions/<key>``) or anything a client typed, and the query string carries
install-page tokens. Neither is ever logged or used as a label.

``GET /metrics`` is not public: it answers only a request with
``Authorization: Bearer $FIRSTTAG_METRICS_TOKEN``, or, when no token is configured, a
request from a loopback peer that no proxy forwarded (no ``X-Forwarded-For``/``Forwarded``),
so a Prometheus or ``curl`` on the same host works and nothing through nginx does.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from typing import Any

from flask import Flask, Response, current_app, g, request

from firsttag import logs, metrics
from firsttag.events.readiness import snapshot
from firsttag.web.context import services
from firsttag.web.errors import APIError

access_log = logging.getLogger("firsttag.access")

#: URL arguments that are site IDs (public), and so may appear in a logged path.
_PUBLIC_ARGS = ("site_id", "name")
_SITE_ID = re.compile(r"st_[0-9a-f]{12}")
#: Blueprints whose POSTs carry events.
_INGEST = ("api", "tracking")
OBSERVER = "firsttag.requests"


def register(app: Flask) -> None:
    """Add the timing hooks and the ``/metrics`` route to ``app``."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics)
    app.extensions[OBSERVER] = RequestObserver()
    collector = metrics.PipelineCollector(lambda: snapshot(services().redis))
    # The registry is built per app (its pipeline gauges read this app's Redis).
    app.extensions["firsttag.metrics"] = metrics.registry([collector])


def _start() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    status = response.status_code
    if any(not v.allowed for v in g.get("rate_verdicts", ())):
        metrics.RATE_LIMITED.labels(endpoint).inc()
    elif request.method == "POST" and request.blueprint in _INGEST:
        _count_events(status, response)
    site = g.get("site_id") or _view_arg_site()
    observer(current_app).observe(endpoint, request.method, status, seconds, _public_path(), site)
    return response


class RequestObserver:
    """Counts answered requests and writes their access-log lines; one per app.

    Keeps the metrics' label children: ``labels()`` takes a lock and builds a tuple on
    each call, and the set of endpoints, methods and statuses is small and fixed by the
    URL map.
    """

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(
        self, endpoint: str, method: str, status: int, seconds: float, path: str, site: str | None
    ) -> None:
        """Count one answered request and write its access-log line.

        ``endpoint`` is the URL rule (never the raw path), ``path`` what may be logged of
        it (see :func:`_public_path`). :mod:`firsttag.web.tagfront`, which answers tag
        requests before Flask, calls it too.
        """
        counter = self._counters.get((endpoint, method, status))
        if counter is None:
            counter = metrics.REQUESTS.labels(endpoint, method, str(status))
            self._counters[(endpoint, method, status)] = counter
        counter.inc()
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._histograms[endpoint] = metrics.LATENCY.labels(endpoint)
        histogram.observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            logs.info_line(
                access_log,
                "request",
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "durationMs": round(seconds * 1000, 3),
                    "site": site,
                },
            )


def observer(app: Flask) -> RequestObserver:
    """The :class:`RequestObserver` of ``app`` (made by :func:`register`)."""
    return app.extensions[OBSERVER]  # type: ignore[no-any-return]


def _count_events(status: int, response: Response) -> None:
    # Most requests have no query string: skip parsing one into a MultiDict.
    if request.query_string and request.args.get("validate") in ("1", "true"):
        return  # a dry run: nothing was queued
    if status >= 400:
        if status < 500 and status != 429:
            metrics.EVENTS.labels("rejected").inc()
        return
    if request.blueprint == "api":  # browser events: duplicates are absorbed by the store
        metrics.EVENTS.labels("accepted").inc()
        return
    body = response.get_json(silent=True) or {}
    counts = body.get("counts")
    if isinstance(counts, dict):  # a batch: each item on its own
        for outcome in ("accepted", "duplicate", "rejected"):
            if counts.get(outcome):
                metrics.EVENTS.labels(outcome).inc(counts[outcome])
        return
    metrics.EVENTS.labels("duplicate" if body.get("duplicate") else "accepted").inc()


def _view_arg_site() -> str | None:
    args = request.view_args or {}
    value = str(args.get("site_id") or args.get("name") or "")
    return value if _SITE_ID.fullmatch(value) else None


def _public_path() -> str:
    """The request's path with every URL argument except site IDs left as its placeholder."""
    rule = request.url_rule
    if rule is None:
        return "<unmatched>"  # a path no rule knows may hold anything a client typed
    path = rule.rule
    for name, value in (request.view_args or {}).items():
        # Only what could be a site ID: anything else a client typed stays the rule's
        # placeholder, so the log never carries text chosen by a stranger.
        if name in _PUBLIC_ARGS and _SITE_ID.fullmatch(str(value)):
            path = _fill(path, name, str(value))
    return path


def _fill(rule: str, name: str, value: str) -> str:
    start = rule.find("<")
    while start != -1:
        end = rule.find(">", start)
        if rule[start + 1 : end].split(":")[-1] == name:
            return rule[:start] + value + rule[end + 1 :]
        start = rule.find("<", end)
    return rule


def _metrics() -> Any:
    """``GET /metrics``: this host's counts and the pipeline's gauges, Prometheus text format."""
    _allow_scrape()
    body = metrics.exposition(current_app.extensions["firsttag.metrics"])
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")


def _allow_scrape() -> None:
    token = services().config.metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise APIError(401, "metrics_token_required", "Authorization: Bearer <token>")
        return
    forwarded = request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded")
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if forwarded or not loopback:
        raise APIError(
            403, "metrics_forbidden", "set FIRSTTAG_METRICS_TOKEN to scrape from another host"
        )
