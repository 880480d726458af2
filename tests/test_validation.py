"""Hostile bodies and query strings: each is a 400 naming the field, never a 5xx, and
nothing is queued, so nothing the worker cannot store is ever acknowledged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from firsttag.events.buffer import BUFFER_KEY
from redis import Redis

V, S = "v" * 32, "s" * 32
NOW = datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


# endpoint → (which key authenticates it, a valid body).
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "/api/v1/sessions": ("pk", {"siteKey": "PK", "visitorId": V, "sessionId": S}),
    "/api/v1/beacon": (
        "pk",
        {
            "siteKey": "PK",
            "id": "b" * 32,
            "name": "Purchase",
            "visitorId": V,
            "value": 100,
            "currency": "EUR",
            "metadata": {"plan": "pro"},
        },
    ),
    "/api/webhooks/orders": (
        "sk",
        {
            "orderId": "o1",
            "storeId": "st",
            "organizationId": "org",
            "visitorId": V,
            "sessionId": S,
            "totalCents": 2500,
            "currency": "EUR",
            "platform": "custom",
            "status": "completed",
            "orderCreatedAt": NOW,
            "items": [{"productId": "mug", "quantity": 2, "priceCents": 1250, "totalCents": 2500}],
        },
    ),
    "/api/v1/track/lead": (
        "sk",
        {
            "clickId": "c1",
            "eventName": "Sign Up",
            "customerExternalId": "cust",
            "customerName": "Ann",
            "metadata": {"plan": "pro"},
        },
    ),
    "/api/v1/track/sale": (
        "sk",
        {
            "customerExternalId": "cust",
            "amount": 100,
            "invoiceId": "inv1",
            "clickId": "c1",
            "metadata": {"plan": "pro"},
        },
    ),
    "/api/v1/events": (
        "sk",
        {
            "event": "sale",
            "customerExternalId": "cust",
            "amount": 199.0,
            "currency": "USD",
            "timestamp": NOW,
            "invoiceId": "inv2",
            "metadata": {"plan": "pro"},
        },
    ),
    "/api/v1/conversions": (
        "sk",
        {
            "name": "Purchase",
            "visitor_id": V,
            "value": 4900,
            "currency": "EUR",
            "timestamp": NOW,
            "metadata": {"plan": "pro"},
        },
    ),
}


def _with(path: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    return path, {**BODIES[path][1], **changes}


# (endpoint, body or raw bytes, the field the error must name)
CASES: list[tuple[str, Any, str]] = [
    # Nesting deeper than the limit: a 400, never a RecursionError.
    # (within the 64 KiB body limit, so that the depth is what is refused, not the size)
    ("/api/v1/beacon", b"[" * 30_000 + b"]" * 30_000, "body"),
    ("/api/v1/conversions", b'{"a":' * 6_000 + b"1" + b"}" * 6_000, "body"),
    (*_with("/api/v1/beacon", metadata=_nested(40)), "metadata"),
    (*_with("/api/v1/track/lead", metadata=_nested(40)), "metadata"),
    # NaN, Infinity and numbers a double cannot hold (JSON.parse makes them Infinity).
    (*_with("/api/v1/beacon", metadata={"x": float("nan")}), "metadata.x"),
    (*_with("/api/v1/conversions", metadata={"x": float("inf")}), "metadata.x"),
    (*_with("/api/v1/track/sale", metadata={"x": float("-inf")}), "metadata.x"),
    (
        "/api/v1/beacon",
        b'{"siteKey":"PK","id":"'
        + b"b" * 32
        + b'","name":"P","visitorId":"'
        + V.encode()
        + b'","value":NaN}',
        "value",
    ),
    (
        "/api/v1/events",
        json.dumps(BODIES["/api/v1/events"][1])
        .replace('"amount": 199.0', '"amount": Infinity')
        .encode(),
        "amount",
    ),
    (
        "/api/v1/events",
        json.dumps(BODIES["/api/v1/events"][1]).replace('"plan": "pro"', '"plan": 1e400').encode(),
        "metadata.plan",
    ),
    (
        "/api/v1/conversions",
        json.dumps(BODIES["/api/v1/conversions"][1])
        .replace('"plan": "pro"', '"plan": 1e400')
        .encode(),
        "metadata.plan",
    ),
    (
        "/api/v1/beacon",
        json.dumps(BODIES["/api/v1/beacon"][1]).replace('"pro"', "1" + "0" * 400).encode(),
        "metadata.plan",
    ),
    # Exact decimals with bounded magnitude.
    (
        "/api/v1/events",
        json.dumps(BODIES["/api/v1/events"][1])
        .replace('"amount": 199.0', '"amount": 9e999999')
        .encode(),
        "amount",
    ),
    (
        "/api/v1/events",
        json.dumps(BODIES["/api/v1/events"][1])
        .replace('"amount": 199.0', '"amount": 1e300')
        .encode(),
        "amount",
    ),
    (
        "/api/v1/events",
        json.dumps(BODIES["/api/v1/events"][1])
        .replace('"plan": "pro"', '"plan": 9e999999')
        .encode(),
        "metadata.plan",
    ),
    # Dates outside 2000-01-01 .. now + 5 min, or not in the seeds' ISO 8601 form.
    (*_with("/api/webhooks/orders", orderCreatedAt="0001-01-01T00:00:00+01:00"), "orderCreatedAt"),
    (*_with("/api/webhooks/orders", orderCreatedAt="0001-01-01T00:00:00Z"), "orderCreatedAt"),
    (*_with("/api/webhooks/orders", orderCreatedAt="1000-01-01T00:00:00Z"), "orderCreatedAt"),
    (*_with("/api/webhooks/orders", updatedAt="9999-12-31T23:59:59-01:00"), "updatedAt"),
    (*_with("/api/v1/events", timestamp="0001-01-01T00:00:00Z"), "timestamp"),
    (*_with("/api/v1/conversions", timestamp="0999-12-31T23:59:59+14:00"), "timestamp"),
    (*_with("/api/v1/conversions", timestamp="2026-W15-5T10:00:00Z"), "timestamp"),
    (*_with("/api/v1/events", timestamp="\u0662\u0660\u0662\u0666-04-10T12:34:56Z"), "timestamp"),
    # NUL, which PostgreSQL refuses in text, anywhere: identifiers, names, metadata.
    (*_with("/api/v1/sessions", siteKey="pk_\x00"), "siteKey"),
    (*_with("/api/v1/beacon", name="Pur\x00chase"), "name"),
    (*_with("/api/v1/beacon", orderId="o\x001"), "orderId"),
    (*_with("/api/webhooks/orders", orderId="o\x00"), "orderId"),
    (*_with("/api/webhooks/orders", storeId="\x00"), "storeId"),
    (*_with("/api/v1/track/lead", customerExternalId="c\x00"), "customerExternalId"),
    (*_with("/api/v1/track/lead", customerName="Ann\x00"), "customerName"),
    (*_with("/api/v1/track/sale", paymentProcessor="stripe\x00"), "paymentProcessor"),
    (*_with("/api/v1/events", email="a\x00@b.example"), "email"),
    (*_with("/api/v1/conversions", name="\x00"), "name"),
    (*_with("/api/v1/conversions", metadata={"k\x00": "v"}), "metadata.k\x00"),
    (*_with("/api/v1/conversions", metadata={"k": ["ok", "v\x00"]}), "metadata.k.1"),
    # Lone surrogates cannot be encoded as UTF-8 for the database.
    (*_with("/api/v1/conversions", name="a\ud800b"), "name"),
    (*_with("/api/v1/beacon", metadata={"k": "\udfff"}), "metadata.k"),
    # Lengths the store's columns hold.
    (*_with("/api/v1/events", customerExternalId=None, email="a" * 200 + "@b.example"), "email"),
    (
        *_with("/api/v1/track/lead", customerExternalId="\u00e9" * 190, eventName="\u00e9" * 255),
        "eventName",
    ),
    (*_with("/api/v1/conversions", name="n" * 201), "name"),
    # Wrong types.
    (*_with("/api/v1/conversions", value="4900"), "value"),
    (*_with("/api/v1/beacon", value=[1]), "value"),
    ("/api/v1/beacon", b"[]", "body"),
    ("/api/v1/beacon", b'{"a":', "body"),
]

QUERIES: list[tuple[str, str]] = [
    ("/api/v1/conversions?limit=\u00b2", "limit"),
    ("/api/v1/conversions?limit=\u0661\u0662", "limit"),
    ("/api/v1/conversions?limit=" + "9" * 5000, "limit"),
    ("/api/v1/conversions?cursor=" + "9" * 5000, "cursor"),
    ("/api/v1/conversions?cursor=\u0661", "cursor"),
    ("/api/v1/conversions?cursor=-1", "cursor"),
    ("/api/v1/analytics/funnel?start=\u0662\u0660\u0662\u0666-01-01", "start"),
    ("/api/v1/analytics/funnel?start=20260101", "start"),
    ("/api/v1/analytics/funnel?end=2026-W01-1", "end"),
    ("/api/v1/analytics/timeseries?start=0001-01-01", "start"),
    ("/api/v1/analytics/timeseries?end=9999-12-31", "end"),
]


def _headers(kind: str, site: Any, secret: str) -> dict[str, str]:
    if kind == "pk":
        return {"Content-Type": "text/plain", "Origin": "https://shop.example"}
    return {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}


def _raw(body: Any, site_key: str) -> bytes:
    if isinstance(body, bytes):
        return body.replace(b'"PK"', json.dumps(site_key).encode())
    if body.get("siteKey") == "PK":
        body = {**body, "siteKey": site_key}
    # allow_nan: send the NaN and Infinity literals that json.loads accepts by default.
    return json.dumps(body, allow_nan=True).encode()


@pytest.mark.parametrize(("path", "body", "field"), CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_hostile_body_is_a_400_naming_the_field(client, config, site_and_secret, path, body, field):
    site, secret = site_and_secret
    kind = BODIES[path][0]
    response = client.post(
        path, data=_raw(body, site.site_key), headers=_headers(kind, site, secret)
    )
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True))
    error = response.get_json()["error"]
    # A field, or a place inside it (metadata.a.a.a… for nesting too deep).
    assert any(
        f["field"] in (field, f"{field}.") or f["field"].startswith(f"{field}.")
        for f in error["fields"]
    ), error
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 0  # nothing half-accepted


@pytest.mark.parametrize("path", list(BODIES))
def test_the_valid_bodies_are_accepted(client, site_and_secret, path):
    # The hostile cases above are one change away from these: the refusal is the change.
    site, secret = site_and_secret
    kind, body = BODIES[path]
    response = client.post(
        path, data=_raw(body, site.site_key), headers=_headers(kind, site, secret)
    )
    assert response.status_code in (200, 202), response.get_data(as_text=True)


def test_a_hostile_item_of_a_batch_is_rejected_alone(client, site_and_secret):
    _, secret = site_and_secret
    good = BODIES["/api/v1/conversions"][1]
    bad = {**good, "metadata": {"x": float("nan")}}
    response = client.post(
        "/api/v1/batch",
        data=json.dumps(
            {"events": [{"type": "conversion", "data": good}, {"type": "conversion", "data": bad}]},
            allow_nan=True,
        ),
        headers=_headers("sk", None, secret),
    )
    assert response.status_code == 400, response.get_json()
    fields = [f["field"] for f in response.get_json()["error"]["fields"]]
    assert fields == ["events.1.data.metadata.x"]


def test_a_batch_item_with_a_nul_is_rejected_alone(client, config, site_and_secret):
    _, secret = site_and_secret
    good = BODIES["/api/v1/conversions"][1]
    bad = {**good, "name": "Pur\x00chase"}
    response = client.post(
        "/api/v1/batch",
        data=json.dumps(
            {"events": [{"type": "conversion", "data": good}, {"type": "conversion", "data": bad}]}
        ),
        headers=_headers("sk", None, secret),
    )
    assert response.status_code == 200, response.get_json()
    accepted, rejected = response.get_json()["results"]
    assert accepted["status"] == "accepted"
    assert rejected["status"] == "rejected" and rejected["httpStatus"] == 400
    assert [f["field"] for f in rejected["error"]["fields"]] == ["name"]
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 1  # the good one only


@pytest.mark.parametrize(
    ("url", "field"), QUERIES, ids=[q[1] + str(i) for i, q in enumerate(QUERIES)]
)
def test_hostile_query_argument_is_a_400_naming_it(client, site_and_secret, url, field):
    _, secret = site_and_secret
    response = client.get(url, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True))
    assert [f["field"] for f in response.get_json()["error"]["fields"]] == [field]


@pytest.mark.parametrize(
    "path",
    [
        "/gtm/%00/custom-html",
        "/gtm/%00/template.tpl",
        "/gtm/%00/container.json",
        "/t/%00.js",
        "/gtm/" + "s" * 5000 + "/custom-html",
    ],
)
def test_a_site_id_no_site_can_have_is_a_404_not_a_500(client, site, path):
    # Found by an outside review: on PostgreSQL a NUL in a URL's site ID reached the query
    # and failed it (500, with the SQL in the log) instead of finding no site.
    answer = client.get(path)
    assert answer.status_code == 404, answer.get_data(as_text=True)
