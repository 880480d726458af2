"""The OpenAPI 3.1 document: its ``POST`` operations come from :mod:`firsttag.endpoints`.

Request bodies are the payload models; the read endpoints (``GET``) are written out here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from firsttag.endpoints import ENDPOINTS, Endpoint

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

# How each kind of caller authenticates, as OpenAPI security schemes (None: key in the body).
_SECURITY = {"body": None, "publishable": "siteKey", "secret": "secretKey"}


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
# Reports by where visits came from (firsttag/analytics/breakdown.py); literal here, as the
# apispec layer sits beside analytics, not above it.
_DIMENSIONS = ["channel", "source", "medium", "campaign", "landingPage", "device"]
_GROUPING = [
    _query(
        "groupBy",
        {"type": "string", "enum": [*_DIMENSIONS, "attributionModel"]},
        "one result per value of this dimension",
    ),
    _query(
        "filter",
        {"type": "array", "items": {"type": "string"}},
        "dimension:value, repeatable; (none) matches an unknown value",
    ),
    _query(
        "model",
        {"type": "string", "enum": ["firstTouch", "lastTouch", "lastNonDirect"]},
        "the touch conversions are credited to (lastNonDirect)",
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


def _post(endpoint: Endpoint) -> dict[str, Any]:
    name = endpoint.payload.__name__
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref(name)},
                "text/plain": {"schema": _ref(name)},
            },
        },
        "responses": {
            **{str(ok): {"description": "accepted"} for ok in endpoint.ok},
            **_errors(*endpoint.errors),
        },
    }
    security = _SECURITY[endpoint.auth]
    if security:
        op["security"] = [{security: []}]
    if endpoint.auth == "secret":
        op["parameters"] = _VALIDATE
    return {"post": op}


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    components: dict[str, Any] = {"Error": _ERROR}
    for endpoint in ENDPOINTS:
        model = endpoint.payload
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    secret_get = {"security": [{"secretKey": []}]}
    doc: dict[str, Any] = {
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
            "/api/v1/analytics/funnel": {
                "get": {
                    "summary": "clicks → leads → sales",
                    "parameters": _DATES + _GROUPING,
                    **secret_get,
                    "responses": {"200": {"description": "the funnel"}, **_errors(400, 401, 403)},
                }
            },
            "/api/v1/analytics/timeseries": {
                "get": {
                    "summary": "per day: clicks, leads, sales, revenue",
                    "parameters": _DATES + _GROUPING,
                    **secret_get,
                    "responses": {
                        "200": {"description": "one entry per day"},
                        **_errors(400, 401, 403),
                    },
                }
            },
            "/api/v1/analytics/breakdown": {
                "get": {
                    "summary": "per channel, source, …: sessions, leads, sales, revenue, rates",
                    "parameters": _DATES
                    + _GROUPING
                    + [
                        _query("sort", {"type": "string"}, "sessions, sales, revenue.EUR, …"),
                        _query("order", {"type": "string", "enum": ["desc", "asc"]}, "desc"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "50"),
                        _query("offset", {"type": "integer", "minimum": 0}, "nextOffset"),
                    ],
                    **secret_get,
                    "responses": {"200": {"description": "a page"}, **_errors(400, 401, 403)},
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
                "get": {
                    "summary": "Stored conversions, newest first",
                    "parameters": _PAGE,
                    **secret_get,
                    "responses": {"200": {"description": "a page"}, **_errors(400, 401, 403)},
                },
            },
        },
    }
    for endpoint in ENDPOINTS:
        doc["paths"].setdefault(endpoint.path, {}).update(_post(endpoint))
    return doc
