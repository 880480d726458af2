"""One JSON shape for every error: ``{"error": {"code", "message", "fields"?}}``.

Dub's surface answers in Dub's envelope instead, so that Dub's SDKs raise their typed
errors (``BadRequest``, ``Unauthorized``, ``NotFound``, …): ``code`` is Dub's fixed code
for the status (:data:`DUB_CODES`, from Dub's SDK error classes), firsttag's precise code
moves to ``reason`` (a key the SDKs ignore) and ``fields`` stays. Dub's surface is every
request routed to a blueprint whose name starts with ``dub`` (``dub_track``,
``dub_customers``, …); an unknown URL matches no blueprint and answers in our envelope.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, has_request_context, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from firsttag.events.buffer import BacklogFull
from firsttag.schemas import InvalidPayload

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client as JSON with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}

    def dub_body(self) -> dict[str, Any]:
        """The body in Dub's envelope: Dub's code for the status, ours as ``reason``."""
        error: dict[str, Any] = {
            "code": dub_code(self.status),
            "message": self.message,
            "reason": self.code,
        }
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


#: Dub's code for each status its SDKs map to a typed error (Dub's SDK error classes, as in
#: PyPI ``dub`` 0.39.0 and npm ``dub`` 0.73.5); the SDKs refuse any other code.
DUB_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "invite_expired",
    422: "unprocessable_entity",
    429: "rate_limit_exceeded",
    500: "internal_server_error",
}


def dub_code(status: int) -> str:
    """Dub's code for ``status``; a status Dub never answers takes its class's code.

    The SDKs raise a generic error for those statuses (413, 415, 503, …) without reading
    the code, so the nearest of Dub's codes keeps the body valid for anyone who does.
    """
    if status in DUB_CODES:
        return DUB_CODES[status]
    return "bad_request" if status < 500 else "internal_server_error"


def dub_surface() -> bool:
    """Whether the current request is on Dub's surface (a blueprint named ``dub…``)."""
    if not has_request_context():
        return False
    return any(name.startswith("dub") for name in (request.blueprint or "").split("."))


def field_error(field: str, message: str) -> APIError:
    """A 400 for one bad field."""
    return APIError(
        400, "invalid_fields", f"{field}: {message}", [{"field": field, "message": message}]
    )


def payload_error(exc: InvalidPayload) -> APIError:
    """The 400 that answers a body :func:`firsttag.schemas.parse` refused."""
    return APIError(400, exc.code, exc.message, exc.fields)


def _respond(err: APIError) -> Any:
    response = jsonify(err.dub_body() if dub_surface() else err.body())
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


# Codes for the HTTP errors Werkzeug raises before our handlers run.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def register(app: Flask) -> None:
    """Answer every error of ``app`` as JSON, 5xx included, without leaking internals."""

    @app.errorhandler(APIError)
    def _api_error(err: APIError) -> Any:
        return _respond(err)

    @app.errorhandler(InvalidPayload)
    def _invalid_payload(exc: InvalidPayload) -> Any:
        return _respond(payload_error(exc))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Any:
        status = err.code or 500
        message = {
            404: "no such resource",
            413: f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
        }.get(status, err.name)
        return _respond(APIError(status, _HTTP_CODES.get(status, "http_error"), message))

    @app.errorhandler(RedisError)
    def _queue_down(err: RedisError) -> Any:
        # Nothing was acknowledged: the client may safely retry the same request.
        log.error("redis unavailable: %s", err)
        return _respond(
            APIError(
                503,
                "queue_unavailable",
                "event queue unavailable, retry later",
                headers={"Retry-After": "5"},
            )
        )

    @app.errorhandler(BacklogFull)
    def _backlog(err: BacklogFull) -> Any:
        return _respond(
            APIError(
                429,
                "backlog_full",
                "too many events are waiting; retry later",
                headers={"Retry-After": "5"},
            )
        )

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Any:
        log.exception("unhandled error")
        return _respond(APIError(500, "internal_error", "internal server error"))
