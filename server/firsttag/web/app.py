"""The web application: :func:`create_app` registers the blueprints and shared services.

The data path: :mod:`firsttag.tag` (the script a page loads) → :mod:`firsttag.web` (what
the tag and back ends send) → :mod:`firsttag.events.buffer` (Redis) →
:mod:`firsttag.events.drain` (RQ worker) → :mod:`firsttag.store` (SQL).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from redis import Redis
from sqlalchemy import text

from firsttag import store
from firsttag.config import Config
from firsttag.events.buffer import EventBuffer
from firsttag.events.readiness import report
from firsttag.identity import SessionKeys
from firsttag.limiter import RateLimiter
from firsttag.sites import SiteDirectory
from firsttag.tag.render import TagCache
from firsttag.web import (
    analytics,
    api,
    dashboard,
    dub_analytics,
    dub_customers,
    dub_events,
    errors,
    gtm,
    install,
    tags,
    telemetry,
    tracking,
)
from firsttag.web.beaconfront import BeaconFront
from firsttag.web.context import EXTENSION, Services, services
from firsttag.web.proxies import trust_proxies
from firsttag.web.ratelimit import add_headers
from firsttag.web.tagfront import TagFront
from firsttag.web.waits import WaitSlots


def create_app(config: Config | None = None) -> Flask:
    """Create the web application for ``config`` (default: from the environment)."""
    config = config or Config.from_env()
    if not config.redis_url:
        raise SystemExit(
            "FIRSTTAG_REDIS_URL is not set. `firsttag serve` starts a Redis server and sets it."
        )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    engine = store.connect(config.database_url)
    redis = Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
    app.extensions[EXTENSION] = Services(
        config=config,
        engine=engine,
        redis=redis,
        buffer=EventBuffer(
            redis,
            config.queue_name,
            config.max_backlog,
            config.max_site_backlog_bytes,
            config.max_backlog_bytes,
        ),
        sites=SiteDirectory(engine),
        session_keys=SessionKeys(config.secret_key),
        tags=TagCache(config.public_url),
        limiter=RateLimiter(redis),
        waits=WaitSlots(config.wait_slots, config.wait_slots_site),
    )
    # Tag GETs are answered before Flask's dispatch (telemetry's hooks must exist first).
    telemetry.register(app)
    # Accepted beacons and session registrations too (refusals still go to Flask).
    app.wsgi_app = BeaconFront(app.wsgi_app, app, app.extensions[EXTENSION])  # type: ignore[method-assign]
    app.wsgi_app = TagFront(  # type: ignore[method-assign]
        app.wsgi_app, app, app.extensions[EXTENSION], tags.TAG_CACHE_SECONDS
    )
    try:
        app.wsgi_app = trust_proxies(app.wsgi_app, config.trusted_proxies)  # type: ignore[method-assign]
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    errors.register(app)
    app.register_blueprint(tags.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(tracking.bp)
    app.register_blueprint(tracking.dub_bp)
    app.register_blueprint(analytics.bp)
    app.register_blueprint(gtm.bp)
    app.register_blueprint(install.bp)
    # Dub's read and manage routes, under /api/v1 and at the root (a bare host works as
    # the SDKs' server URL); their names start with "dub" for Dub's error envelope.
    for dub_bp in (dub_customers.bp, dub_events.bp, dub_analytics.bp):
        app.register_blueprint(dub_bp, url_prefix="/api/v1")
        app.register_blueprint(dub_bp, name=f"{dub_bp.name}_root")
    dashboard.init_app(app)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.add_url_rule("/readyz", "readyz", _readyz)
    app.after_request(add_headers)
    app.after_request(_no_referrer)
    return app


def _no_referrer(response: Response) -> Response:
    # Pages carry install links with signed tokens; links out of them must not leak the URL.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _healthz() -> Any:
    s = services()
    checks: dict[str, str] = {}
    try:
        s.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means "not healthy", whatever its type
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        with s.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return {"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503


def _readyz() -> Any:
    """Whether events are being stored: Redis, store, worker heartbeat, backlog, dead letters.

    200 when they are, 503 naming the failing checks (see :mod:`firsttag.events.readiness`).
    """
    s = services()
    body, ready = report(s.redis, s.engine, s.config.ready_heartbeat_s, s.config.ready_event_age_s)
    return body, 200 if ready else 503
