"""Rate limits for a request: spend them, refuse with 429, report ``RateLimit-*`` headers.

The limits themselves (GCRA in one Lua script, failing open) are :mod:`firsttag.limiter`.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Response, g

from firsttag.limiter import PERIOD_MS, Limit, RateLimiter, Verdict, client_subject
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError


def enforce(limiter: RateLimiter, limits: Sequence[Limit], cost: int = 1) -> None:
    """Spend ``limits`` for this request, or raise a 429 with ``Retry-After``.

    The verdict is kept on :data:`flask.g`, where :func:`add_headers` finds the tightest
    one for the response's ``RateLimit-*`` headers.
    """
    verdict = limiter.hit(limits, cost)
    if verdict is not None:
        record(verdict)


def record(verdict: Verdict) -> None:
    """Keep ``verdict`` for the response's headers; raise a 429 when it refused."""
    seen: list[Verdict] = g.setdefault("rate_verdicts", [])
    seen.append(verdict)
    if not verdict.allowed:
        raise APIError(
            429,
            "rate_limited",
            f"too many requests; retry in {verdict.retry_after_s} s",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )


def add_headers(response: Response) -> Response:
    """Add ``RateLimit-Limit/-Remaining/-Reset`` (IETF draft names) for the tightest limit."""
    seen: list[Verdict] | None = g.get("rate_verdicts")
    if seen:
        tightest = min(seen, key=lambda v: (v.allowed, v.remaining))
        response.headers["RateLimit-Limit"] = str(tightest.limit)
        response.headers["RateLimit-Remaining"] = str(tightest.remaining)
        response.headers["RateLimit-Reset"] = str(tightest.reset_s)
        response.headers["RateLimit-Policy"] = f"{tightest.limit};w={PERIOD_MS // 1000}"
    return response


def charge_client(address: str | None) -> None:
    """Spend one request of the client's per-address limit (browser endpoints).

    This runs before the body is read: the site is named in the body, so this limit is
    server-wide (``FIRSTTAG_RATE_PER_IP``), and a flood is refused before any parsing.
    """
    s = services()
    enforce(s.limiter, [client_limit(address)])


def client_limit(address: str | None) -> Limit:
    """The per-address limit of a browser request (``FIRSTTAG_RATE_PER_IP``)."""
    return Limit("ip", client_subject(address), services().config.rate_per_ip)


def charge_site(bucket: str, site: Site, cost: int = 1) -> None:
    """Spend ``cost`` requests of ``site``'s ``bucket`` (``browser``, ``server`` or ``reads``).

    The site's own setting wins over the server-wide default from the configuration.
    """
    enforce(services().limiter, [site_limit(bucket, site)], cost)


def site_limit(bucket: str, site: Site) -> Limit:
    """``site``'s limit of ``bucket``: its own setting, else the server-wide default."""
    per_minute = getattr(site.settings, f"{bucket}_rate_per_minute") or getattr(
        services().config, f"rate_{bucket}"
    )
    g.site_id = site.id  # for the access log (firsttag.web.telemetry)
    return Limit(bucket, site.id, per_minute)
