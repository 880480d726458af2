"""The OpenAPI 3.1 document: its ``POST`` operations come from :mod:`firsttag.endpoints`.

Request bodies are the payload models; the read endpoints (``GET``) are written out here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from firsttag.endpoints import ENDPOINTS, Endpoint
from firsttag.schemas import CustomerUpdate

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
    components["CustomerUpdate"] = CustomerUpdate.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path, ops in _dub_paths(secret_get).items():
        doc["paths"].setdefault(path, {}).update(ops)
    return doc


# As analytics/dub_reports.py answers them (apispec may not import analytics: same layer).
INTERVALS = ("24h", "7d", "30d", "90d", "1y", "mtd", "qtd", "ytd", "all")
GROUPINGS = ("count", "timeseries", "event_names")
ANALYTICS_EVENTS = ("clicks", "leads", "sales", "composite")
LISTED_EVENTS = ("leads", "sales")

_DUB_RANGE = [
    _query("interval", {"type": "string", "enum": list(INTERVALS)}, "Dub's interval (24h)"),
    _query("start", {"type": "string"}, "a date or ISO 8601 time; wins over interval"),
    _query("end", {"type": "string"}, "a date or ISO 8601 time (default: now)"),
    _query("timezone", {"type": "string"}, "UTC only"),
]


def _dub_paths(secret_get: dict[str, Any]) -> dict[str, Any]:
    """Dub's read and manage routes (also served at the root, without ``/api/v1``)."""
    customer_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "cus_… ID or ext_<externalId>",
    }

    def op(summary: str, ok: str, errors: tuple[int, ...], **extra: Any) -> dict[str, Any]:
        return {
            "summary": summary,
            **secret_get,
            **extra,
            "responses": {"200": {"description": ok}, **_errors(*errors)},
        }

    return {
        "/api/v1/customers": {
            "get": op(
                "Dub: list customers",
                "a page of customers",
                (400, 401, 403),
                parameters=[
                    _query("email", {"type": "string"}, "exact email"),
                    _query("externalId", {"type": "string"}, "exact external ID"),
                    _query("search", {"type": "string"}, "email, name or cus_ ID"),
                    _query("startingAfter", {"type": "string"}, "cursor: a customer ID"),
                    _query("endingBefore", {"type": "string"}, "cursor: a customer ID"),
                    _query("pageSize", {"type": "integer", "minimum": 1, "maximum": 100}, "100"),
                    _query("sortOrder", {"type": "string", "enum": ["asc", "desc"]}, "desc"),
                ],
            )
        },
        "/api/v1/customers/{id}": {
            "get": op(
                "Dub: one customer", "the customer", (401, 403, 404), parameters=[customer_id]
            ),
            "patch": op(
                "Dub: update name, email, avatar",
                "the customer as stored",
                (400, 401, 403, 404),
                parameters=[customer_id],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CustomerUpdate")}},
                },
            ),
            "delete": op(
                "Dub: erase the customer (docs/privacy.md)",
                "{id}: the erasure is queued",
                (401, 403, 404),
                parameters=[customer_id],
            ),
        },
        "/api/v1/events": {
            "get": op(
                "Dub: lead and sale events",
                "a page of events",
                (400, 401, 403),
                parameters=[
                    _query("event", {"type": "string", "enum": list(LISTED_EVENTS)}, "Dub's event"),
                    *_DUB_RANGE,
                    _query("page", {"type": "integer", "minimum": 1}, "1"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "100"),
                ],
            )
        },
        "/api/v1/analytics": {
            "get": op(
                "Dub: counts, time series, event names",
                "Dub's analytics shape for groupBy",
                (400, 401, 403),
                parameters=[
                    _query("event", {"type": "string", "enum": list(ANALYTICS_EVENTS)}, "clicks"),
                    _query("groupBy", {"type": "string", "enum": list(GROUPINGS)}, "count"),
                    _query("currency", {"type": "string"}, "saleAmount's currency"),
                    *_DUB_RANGE,
                ],
            )
        },
    }
