"""One JSON shape for every error: ``{"error": {"code", "message", "fields"?}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
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


def field_error(field: str, message: str) -> APIError:
    """A 400 for one bad field."""
    return APIError(
        400, "invalid_fields", f"{field}: {message}", [{"field": field, "message": message}]
    )


def payload_error(exc: InvalidPayload) -> APIError:
    """The 400 that answers a body :func:`firsttag.schemas.parse` refused."""
    return APIError(400, exc.code, exc.message, exc.fields)


def _respond(err: APIError) -> Any:
    response = jsonify(err.body())
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
