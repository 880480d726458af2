"""The OpenAPI 3.1 document, built from the payload models in :mod:`firsttag.schemas`."""

from __future__ import annotations

from functools import cache
from typing import Any

from firsttag import schemas

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
    },
}


# Answers every secret-key write endpoint can give besides success.
_WRITE = (400, 401, 403, 409, 413, 429, 503)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_DATES = [
    _query("start", {"type": "string", "format": "date"}, "first day (default: 30 days ago)"),
    _query("end", {"type": "string", "format": "date"}, "last day (default: today)"),
    _query(
        "excludeBots",
        {"type": "string", "enum": ["1", "true"]},
        "leave out clicks of sessions flagged as bots",
    ),
]
_PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (50)"),
    _query("cursor", {"type": "integer", "minimum": 1}, "nextCursor of the previous page"),
]
_VALIDATE = [
    _query(
        "validate",
        {"type": "string", "enum": ["1", "true"]},
        "validate and dry-run attribution; store nothing",
    )
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
        for c in codes
    }


def _post(model: type, summary: str, security: str | None, ok: int, *codes: int) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref(model.__name__)},
                "text/plain": {"schema": _ref(model.__name__)},
            },
        },
        "responses": {str(ok): {"description": "accepted"}, **_errors(*codes)},
    }
    if security:
        op["security"] = [{security: []}]
    if security == "secretKey":
        op["parameters"] = _VALIDATE
    return {"post": op}


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    components: dict[str, Any] = {"Error": _ERROR}
    for model in schemas.ALL_PAYLOADS:
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    secret_get = {"security": [{"secretKey": []}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "firsttag", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "siteKey": {"type": "http", "scheme": "bearer", "description": "pk_… key"},
                "secretKey": {"type": "http", "scheme": "bearer", "description": "sk_… key"},
            },
        },
        "paths": {
            "/api/v1/sessions": _post(
                schemas.SessionRegistration, "Register a tab session", None, 200, 400, 401, 403, 413
            ),
            "/api/v1/sessions/convert": _post(
                schemas.SessionConvert, "Mark a session verified", "siteKey", 200, 400, 401, 404
            ),
            "/api/v1/beacon": _post(
                schemas.BrowserConversion, "Browser conversion", None, 202, 400, 401, 403, 413
            ),
            "/api/webhooks/orders": _post(
                schemas.OrderWebhook, "Order webhook (Selektable)", "secretKey", 200, *_WRITE
            ),
            "/api/v1/track/lead": _post(
                schemas.TrackLead, "Track a lead (Dub)", "secretKey", 200, 404, *_WRITE
            ),
            "/api/v1/track/sale": _post(
                schemas.TrackSale, "Track a sale (Dub)", "secretKey", 200, 404, *_WRITE
            ),
            "/api/v1/events": _post(
                schemas.LinkEvent, "Lead or Sale event (seed 003)", "secretKey", 200, *_WRITE
            ),
            "/api/v1/batch": _post(
                schemas.Batch,
                "Up to 500 events, answered per item",
                "secretKey",
                200,
                400,
                401,
                403,
                413,
            ),
            "/api/v1/analytics/funnel": {
                "get": {
                    "summary": "clicks → leads → sales",
                    "parameters": _DATES,
                    **secret_get,
                    "responses": {"200": {"description": "the funnel"}, **_errors(400, 401, 403)},
                }
            },
            "/api/v1/analytics/timeseries": {
                "get": {
                    "summary": "per day: clicks, leads, sales, revenue",
                    "parameters": _DATES,
                    **secret_get,
                    "responses": {
                        "200": {"description": "one entry per day"},
                        **_errors(400, 401, 403),
                    },
                }
            },
            "/api/v1/sessions/{sessionKey}": {
                "get": {
                    "summary": "A stored session",
                    **secret_get,
                    "responses": {"200": {"description": "the session"}, **_errors(401, 403, 404)},
                }
            },
            "/api/v1/conversions": {
                **_post(
                    schemas.ServerConversion,
                    "Server-side conversion (seed 002)",
                    "secretKey",
                    200,
                    *_WRITE,
                ),
                "get": {
                    "summary": "Stored conversions, newest first",
                    "parameters": _PAGE,
                    **secret_get,
                    "responses": {"200": {"description": "a page"}, **_errors(400, 401, 403)},
                },
            },
        },
    }
