"""Request helpers shared by the blueprints: bodies, keys and query arguments."""

from __future__ import annotations

from typing import Any

from flask import request

from firsttag import bounds
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError, field_error


def json_body(decimals: bool = False) -> Any:
    """The request body as JSON within :mod:`firsttag.bounds` (413 past the size limit).

    Malformed JSON, nesting deeper than ``bounds.MAX_DEPTH``, ``NaN``/``Infinity`` and
    numbers a double cannot hold are a 400 naming where they are (``body`` for syntax).
    With ``decimals``, numbers with a fraction become :class:`~decimal.Decimal`, so a
    decimal amount is never rounded through a binary float.
    """
    raw = request.get_data(cache=False)
    try:
        return bounds.loads(raw, decimals=decimals)
    except bounds.Unstorable as exc:
        code = "malformed_json" if exc.path == "body" else "invalid_fields"
        raise APIError(
            400, code, f"{exc.path}: {exc.message}", [{"field": exc.path, "message": exc.message}]
        ) from None


def bearer() -> str | None:
    """The token of ``Authorization: Bearer …``, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def secret_site() -> Site:
    """The site of the secret key in ``Authorization``; refuses browser requests."""
    if request.headers.get("Origin") is not None:
        raise APIError(403, "browser_not_allowed", "secret-key endpoints refuse browser requests")
    token = bearer()
    if token is None:
        raise APIError(401, "missing_secret_key", "Authorization: Bearer sk_… is required")
    if token.startswith("pk_"):
        raise APIError(403, "secret_key_required", "this endpoint needs the secret key, not pk_…")
    site = services().sites.by_secret_key(token)
    if site is None:
        raise APIError(401, "invalid_secret_key", "the secret key is not valid")
    return site


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer query argument within [low, high], or a 400 naming it.

    Only ASCII digits: ``str.isdigit`` and ``int`` also take ``١٢`` and ``²``, and
    ``int`` refuses more than 4300 digits with a ValueError, so the length is bounded first.
    """
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not (
        low <= int(raw) <= high
    ):
        raise field_error(name, f"must be an integer from {low} to {high}")
    return int(raw)
