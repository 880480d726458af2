"""Server-side conversions over real HTTP, a real RQ worker and a real SQLite file."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from firsttag import store
from firsttag.admission import CLAIM_PREFIX
from firsttag.events.buffer import BUFFER_KEY
from redis import Redis
from sqlalchemy import insert

from tests.support import wait_until


class Backend:
    """A site's back end: posts with the secret key, reads back through the API."""

    def __init__(self, url: str, secret: str, redis_url: str) -> None:
        self.url = url
        self.redis = Redis.from_url(redis_url)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        return requests.post(
            self.url + path,
            data=json.dumps(body),
            headers={**self.headers, **headers},
            timeout=30,
        )

    def get(self, path: str) -> Any:
        response = requests.get(self.url + path, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def conversion(self, event_id: str, **expect: Any) -> dict[str, Any]:
        """Poll until the conversion with ``event_id`` is stored (and matches ``expect``)."""

        def found() -> dict[str, Any] | None:
            for c in self.get("/api/v1/conversions?limit=500")["data"]:
                if c["eventId"] == event_id and all(c.get(k) == v for k, v in expect.items()):
                    return c
            return None

        return wait_until(found, 20, f"conversion {event_id} {expect}")

    def funnel(self) -> dict[str, Any]:
        return self.get("/api/v1/analytics/funnel")


@pytest.fixture
def backend(live_url, site_and_secret, config) -> Backend:
    return Backend(live_url, site_and_secret[1], config.redis_url)


def iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def selektable_order(order_id: str, **changes: Any) -> dict[str, Any]:
    """The Selektable seed's ecommerce webhook body (Node fetch, translated)."""
    items = [{"productId": "mug", "quantity": 2, "priceCents": 1250, "totalCents": 2500}]
    body = {
        "orderId": order_id,
        "storeId": "store_xxx",
        "organizationId": "org_xxx",
        "visitorId": "v" * 32,
        "sessionId": "s" * 32,
        "totalCents": 2500,
        "currency": "EUR",
        "platform": "custom",
        "status": "completed",
        "orderCreatedAt": iso(),
        "items": [
            {
                "productId": i["productId"],
                "quantity": i["quantity"],
                "priceCents": i["priceCents"],
                "totalCents": i["priceCents"] * i["quantity"],
            }
            for i in items
        ],
    }
    body.update(changes)
    return body


def add_session(
    engine, site_id: str, visitor: str, session: str, click: str | None, ago: timedelta
) -> None:
    """A past visit, as the tag would have registered it ``ago`` earlier."""
    with engine.begin() as conn:
        conn.execute(
            insert(store.sessions).values(
                site_id=site_id,
                session_id=session,
                visitor_id=visitor,
                click_id=click,
                created_at=store.format_time(datetime.now(UTC) - ago),
            )
        )


def earlier_today() -> timedelta:
    """How long ago a past visit can be and still fall on today (UTC): up to an hour.

    The daily series of these tests are read for today; a visit an hour ago would be
    yesterday's between 00:00 and 01:00 UTC.
    """
    now = datetime.now(UTC)
    since_midnight = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
    return min(timedelta(hours=1), since_midnight / 2)


def revenue(backend: Backend, currency: str = "EUR") -> int:
    return backend.funnel()["revenue"].get(currency, 0)


# -- Selektable order webhook ------------------------------------------------------------


def test_selektable_order_snippet_is_stored_and_attributed(backend, site, engine, worker):
    add_session(engine, site.id, "v" * 32, "t" * 32, "clk_first", timedelta(days=2))
    add_session(engine, site.id, "v" * 32, "s" * 32, "clk_last", timedelta(minutes=10))
    response = backend.post("/api/webhooks/orders", selektable_order("ord_1"))
    assert response.status_code == 200
    assert response.json()["success"] is True
    stored = backend.conversion("ord_1")
    assert (stored["kind"], stored["value"], stored["currency"]) == ("sale", 2500, "EUR")
    assert stored["status"] == "completed"
    assert stored["details"]["items"][0]["productId"] == "mug"
    a = stored["attribution"]
    assert a["type"] == "direct"  # the converting session carried the last touch
    assert a["firstTouch"]["clickId"] == "clk_first"
    assert a["lastTouch"]["clickId"] == "clk_last"
    assert 2 * 86400 - 60 <= a["timeToConversionSeconds"] <= 2 * 86400 + 60
    assert a["windowDays"] == 7


def test_assisted_and_window(backend, site, engine, worker):
    add_session(engine, site.id, "w" * 32, "old" * 10, "clk_old", timedelta(days=8))
    add_session(engine, site.id, "w" * 32, "ads" * 10, "clk_ads", timedelta(days=1))
    body = selektable_order("ord_assist", visitorId="w" * 32, sessionId="now" * 10)
    assert backend.post("/api/webhooks/orders", body).status_code == 200
    a = backend.conversion("ord_assist")["attribution"]
    assert a["type"] == "assisted" and a["touches"] == 1  # 8 days ago is outside 7
    assert a["firstTouch"]["clickId"] == "clk_ads"


def test_lead_gen_order_is_a_lead(backend, worker):
    body = selektable_order("appt-1", totalCents=0, currency="USD", items=[])
    assert backend.post("/api/webhooks/orders", body).json() == {
        "success": True,
        "id": "order:appt-1",
        "duplicate": False,
        "updated": False,
    }
    assert backend.conversion("appt-1")["kind"] == "lead"


def test_order_state_machine_refunds_and_stale_updates(backend, worker):
    assert backend.post("/api/webhooks/orders", selektable_order("o1")).status_code == 200
    backend.conversion("o1")
    assert revenue(backend) == 2500

    again = backend.post("/api/webhooks/orders", selektable_order("o1")).json()
    assert again["duplicate"] is True and again["firstReceivedAt"]

    partial = selektable_order("o1", refundedCents=500, updatedAt=iso())
    assert backend.post("/api/webhooks/orders", partial).json()["updated"] is True
    backend.conversion("o1", refunded=500)
    assert revenue(backend) == 2000

    refunded = selektable_order("o1", status="refunded", updatedAt=iso())
    assert backend.post("/api/webhooks/orders", refunded).status_code == 200
    backend.conversion("o1", status="refunded")
    assert revenue(backend) == 0
    assert backend.funnel()["steps"][2]["count"] == 0  # refunded does not count

    stale = selektable_order("o1", status="completed", updatedAt=iso(-timedelta(hours=1)))
    answer = backend.post("/api/webhooks/orders", stale).json()
    assert answer["stale"] is True
    wait_until(lambda: backend.redis.llen(BUFFER_KEY) == 0, 20, "the buffer to drain")
    backend.conversion("o1", status="refunded")  # still refunded


def test_counting_statuses_are_a_site_setting(backend, site, engine, worker):
    from firsttag.sites import update_settings

    assert backend.post("/api/webhooks/orders", selektable_order("p1", status="processing"))
    backend.conversion("p1")
    assert revenue(backend) == 0
    update_settings(engine, site.id, counting_statuses=["completed", "processing"])
    wait_until(lambda: revenue(backend) == 2500, 15, "the new setting (10 s site cache)")


def test_same_order_with_other_values_is_409_naming_them(backend, worker):
    assert backend.post("/api/webhooks/orders", selektable_order("o2")).status_code == 200
    items = [{"productId": "mug", "quantity": 1, "priceCents": 2000, "totalCents": 2000}]
    other = selektable_order("o2", totalCents=2000, items=items, storeId="store_other")
    response = backend.post("/api/webhooks/orders", other)
    assert response.status_code == 409
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert fields == ["items", "storeId", "totalCents"]
    # The 409 holds after the first one is stored too (the database remembers it).
    backend.conversion("o2")
    backend.redis.delete(*backend.redis.keys(CLAIM_PREFIX + "*"))
    assert backend.post("/api/webhooks/orders", other).status_code == 409
    assert backend.post("/api/webhooks/orders", selektable_order("o2")).json()["duplicate"]


def test_order_validation_reports_every_error_with_its_path(backend, config):
    items = [
        {"productId": "a", "quantity": 2, "priceCents": 100, "totalCents": 200},
        {"productId": "b", "quantity": 3, "priceCents": 100, "totalCents": 200},
    ]
    response = backend.post(
        "/api/webhooks/orders",
        selektable_order(
            "bad",
            items=items,
            platform="shopify",
            currency="ABC",
            orderCreatedAt="2026-01-01T10:00:00",
            status="done",
        ),
    )
    assert response.status_code == 400
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert fields == {"items.1", "platform", "currency", "orderCreatedAt", "status"}
    total = backend.post("/api/webhooks/orders", selektable_order("bad", totalCents=9999))
    assert total.status_code == 400
    assert total.json()["error"]["fields"][0]["field"] == "totalCents"
    future = backend.post(
        "/api/webhooks/orders", selektable_order("bad", orderCreatedAt=iso(timedelta(minutes=6)))
    )
    assert future.json()["error"]["fields"][0]["message"] == "is more than 5 minutes in the future"
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 0  # nothing partial


def test_timestamps_are_stored_in_utc(backend, worker):
    body = selektable_order("tz", orderCreatedAt="2026-04-10T14:34:56.000+02:00")
    assert backend.post("/api/webhooks/orders", body).status_code == 200
    stored = backend.conversion("tz")
    assert stored["occurredAt"] == "2026-04-10T12:34:56.000000Z"
    assert stored["receivedAt"] > stored["occurredAt"]


# -- Dub leads and sales -----------------------------------------------------------------


def test_dub_lead_once_per_customer_and_event(backend, worker):
    lead = {
        "clickId": "clk_1",
        "eventName": "Sign Up",
        "customerExternalId": "user_1",
        "customerEmail": "a@example.com",
    }
    first = backend.post("/api/v1/track/lead", lead).json()
    assert first["duplicate"] is False
    name = first["customer"]["name"]
    assert len(name.split()) == 3  # generated, e.g. "Big Red Caribou"
    assert backend.post("/api/v1/track/lead", lead).json()["duplicate"] is True
    conflict = backend.post("/api/v1/track/lead", {**lead, "clickId": "clk_other"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["fields"] == [
        {"field": "clickId", "message": "differs from the first request with this key"}
    ]
    other_event = backend.post("/api/v1/track/lead", {**lead, "eventName": "Trial"})
    assert other_event.json()["duplicate"] is False
    stored = backend.conversion('["user_1","Sign Up"]')
    assert (stored["kind"], stored["clickId"], stored["customerExternalId"]) == (
        "lead",
        "clk_1",
        "user_1",
    )


def test_dub_deferred_lead_takes_the_customers_click_later(backend, worker):
    deferred = {
        "clickId": "clk_d",
        "eventName": "Sign Up",
        "customerExternalId": "user_d",
        "mode": "deferred",
    }
    assert backend.post("/api/v1/track/lead", deferred).status_code == 200
    later = {"clickId": "", "eventName": "Sign Up", "customerExternalId": "user_d"}
    assert backend.post("/api/v1/track/lead", later).status_code == 200
    stored = backend.conversion('["user_d","Sign Up"]')
    assert stored["clickId"] == "clk_d"
    assert len(backend.get("/api/v1/conversions")["data"]) == 1  # the deferred call: no lead
    unknown = backend.post("/api/v1/track/lead", {**later, "customerExternalId": "nobody"})
    assert unknown.status_code == 404
    # Dub's envelope on Dub's route: Dub's code, ours as the reason.
    assert unknown.json()["error"]["code"] == "not_found"
    assert unknown.json()["error"]["reason"] == "customer_not_found"


def test_dub_lead_wait_mode_answers_with_the_stored_record(backend, worker):
    lead = {
        "clickId": "clk_w",
        "eventName": "Demo",
        "customerExternalId": "user_w",
        "mode": "wait",
        "metadata": {"plan": "pro"},
    }
    answer = backend.post("/api/v1/track/lead", lead).json()
    assert answer["conversion"]["metadata"] == {"plan": "pro"}


def test_dub_sale_once_per_invoice(backend, worker):
    backend.post(
        "/api/v1/track/lead",
        {"clickId": "clk_s", "eventName": "Sign Up", "customerExternalId": "user_s"},
    )
    sale = {
        "customerExternalId": "user_s",
        "amount": 4999,
        "currency": "usd",
        "invoiceId": "in_1",
        "leadEventName": "Sign Up",
    }
    assert backend.post("/api/v1/track/sale", sale).json()["duplicate"] is False
    assert backend.post("/api/v1/track/sale", sale).json()["duplicate"] is True
    stored = backend.conversion("in_1")
    assert (stored["value"], stored["currency"], stored["clickId"]) == (4999, "USD", "clk_s")
    assert stored["details"]["leadEventName"] == "Sign Up"
    unknown = backend.post(
        "/api/v1/track/sale", {**sale, "customerExternalId": "ghost", "invoiceId": "in_2"}
    )
    assert unknown.status_code == 404


def test_metadata_limit_is_10000_characters(backend):
    ok = {"x": "y" * 9_990}
    lead = {"clickId": "c", "eventName": "e", "customerExternalId": "u", "mode": "deferred"}
    assert backend.post("/api/v1/track/lead", {**lead, "metadata": ok}).status_code == 200
    big = backend.post("/api/v1/track/lead", {**lead, "metadata": {"x": "y" * 10_000}})
    assert big.status_code == 400
    assert big.json()["error"]["fields"][0]["field"] == "metadata"


# -- seed 003 and seed 002 ---------------------------------------------------------------


def test_seed_003_lead_and_sale_payloads_as_written(backend, worker):
    lead = {
        "event": "lead",
        "timestamp": "2026-04-10T12:34:56.000Z",
        "clickId": "clickid_123",
        "customerExternalId": "user_123",
        "email": "user@gmail.com",
        "name": "user",
        "mode": "deferred",
    }
    sale = {
        "event": "sale",
        "timestamp": "2026-04-10T12:45:10.000Z",
        "clickId": "clk_abc123",
        "customerExternalId": "user_123",
        "email": "alex@example.com",
        "currency": "USD",
        "amount": 199.0,
        "invoiceId": "inv_987",
    }
    assert backend.post("/api/v1/events", lead).status_code == 200
    assert backend.post("/api/v1/events", sale).status_code == 200
    stored = backend.conversion("inv_987")
    assert (stored["value"], stored["currency"]) == (19900, "USD")
    assert stored["occurredAt"] == "2026-04-10T12:45:10.000000Z"
    assert backend.post("/api/v1/events", sale).json()["duplicate"] is True


def sale_json(currency: str, amount: str, extra: str = "") -> str:
    """A seed-003 sale with ``amount`` written exactly as given (JSON number text)."""
    return (
        f'{{"event":"sale","customerExternalId":"u","currency":"{currency}",'
        f'"amount":{amount}{extra}}}'
    )


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("199.0", "USD", 19900),
        ("0.1", "EUR", 10),
        ("1.234", "KWD", 1234),
        ("1500", "JPY", 1500),
        ("19.99", "EUR", 1999),
        ("0.3", "USD", 30),
    ],
)
def test_decimal_amounts_convert_exactly(backend, worker, amount, currency, minor):
    invoice = "inv_" + secrets.token_hex(4)
    raw = sale_json(currency, amount, f',"invoiceId":"{invoice}"')
    response = requests.post(
        backend.url + "/api/v1/events", data=raw, headers=backend.headers, timeout=30
    )
    assert response.status_code == 200
    assert backend.conversion(invoice)["value"] == minor


@pytest.mark.parametrize(
    ("amount", "currency"), [("1.999", "USD"), ("100.5", "JPY"), ("1.2345", "KWD")]
)
def test_too_many_decimals_for_the_currency_are_rejected(backend, amount, currency):
    raw = sale_json(currency, amount)
    response = requests.post(
        backend.url + "/api/v1/events", data=raw, headers=backend.headers, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "amount"


def test_seed_002_server_conversion_linked_by_visitor(backend, site, engine, worker):
    add_session(engine, site.id, "vis_abc" + "0" * 10, "sess" * 8, "clk_m", timedelta(hours=3))
    body = {
        "name": "Purchase Confirmed",
        "visitor_id": "vis_abc" + "0" * 10,
        "order_id": "ord_789",
        "value": 12900,
    }
    assert backend.post("/api/v1/conversions", body).status_code == 200
    stored = backend.conversion("ord_789")
    assert stored["attribution"]["type"] == "assisted"
    assert stored["attribution"]["lastTouch"]["clickId"] == "clk_m"
    sub = {
        "name": "Subscription Activated",
        "order_id": "sub_456",
        "value": 4900,
        "currency": "eur",
    }
    assert backend.post("/api/v1/conversions", sub).status_code == 200
    assert backend.conversion("sub_456")["currency"] == "EUR"


# -- shared rules ------------------------------------------------------------------------


def test_secret_endpoints_refuse_browsers_and_publishable_keys(backend, site):
    order = selektable_order("x")
    assert (
        backend.post("/api/webhooks/orders", order, Origin="https://shop.example").status_code
        == 403
    )
    assert (
        backend.post(
            "/api/webhooks/orders", order, Authorization=f"Bearer {site.site_key}"
        ).status_code
        == 403
    )
    assert (
        backend.post("/api/webhooks/orders", order, Authorization="Bearer sk_wrong").status_code
        == 401
    )
    huge = backend.post("/api/v1/track/lead", {"pad": "x" * 70_000})
    assert huge.status_code == 413


def test_validate_runs_everything_and_stores_nothing(backend, site, engine, config):
    add_session(engine, site.id, "v" * 32, "s" * 32, "clk_v", timedelta(hours=1))
    answer = backend.post("/api/webhooks/orders?validate=1", selektable_order("dry"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["valid"] is True and body["stored"] is False and body["wouldBe"] == "new"
    assert body["attribution"]["type"] == "direct"
    redis = Redis.from_url(config.redis_url)
    assert redis.llen(BUFFER_KEY) == 0 and not redis.keys(CLAIM_PREFIX + "*")
    bad = backend.post("/api/v1/track/sale?validate=1", {"customerExternalId": "u"})
    assert bad.status_code == 400


def test_backlog_full_is_429_with_retry_after(tmp_path, config, site_and_secret):
    from dataclasses import replace

    from firsttag.web.app import create_app

    client = create_app(replace(config, max_backlog=2)).test_client()
    headers = {"Authorization": f"Bearer {site_and_secret[1]}"}
    statuses = [
        client.post(
            "/api/v1/conversions", json={"name": "n", "order_id": f"o{n}"}, headers=headers
        ).status_code
        for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    last = client.post("/api/v1/conversions", json={"name": "n", "order_id": "o2"}, headers=headers)
    assert last.headers["Retry-After"] == "5"
    # The refused event claimed nothing: once there is room it is accepted as new.
    Redis.from_url(config.redis_url).delete(BUFFER_KEY)
    again = client.post(
        "/api/v1/conversions", json={"name": "n", "order_id": "o2"}, headers=headers
    )
    assert again.get_json()["duplicate"] is False


def test_batch_answers_each_item(backend, worker):
    events = [
        {"type": "order", "data": selektable_order("b1")},
        {"type": "order", "data": selektable_order("b1")},
        {"type": "lead", "data": {"clickId": "c", "eventName": "e"}},
        {
            "type": "event",
            "data": {
                "event": "sale",
                "customerExternalId": "u",
                "currency": "USD",
                "amount": 1.5,
                "invoiceId": "bi",
            },
        },
    ]
    body = backend.post("/api/v1/batch", {"events": events}).json()
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "duplicate",
        "rejected",
        "accepted",
    ]
    assert body["results"][2]["error"]["fields"][0]["field"] == "customerExternalId"
    assert body["counts"] == {"accepted": 2, "duplicate": 1, "rejected": 1}
    assert backend.conversion("bi")["value"] == 150
    too_many = backend.post("/api/v1/batch", {"events": [events[0]] * 501})
    assert too_many.status_code == 400


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_order_webhook(backend, worker):
    body = json.dumps(selektable_order("curl_1"))
    result = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            backend.url + "/api/webhooks/orders",
            "-H",
            "Content-Type: application/json",
            "-H",
            backend.headers["Authorization"].join(["Authorization: ", ""]),
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(result.stdout)["success"] is True
    backend.conversion("curl_1")


def test_funnel_and_timeseries(backend, site, engine, worker):
    add_session(engine, site.id, "f" * 32, "f1" * 16, "clk_f1", earlier_today())
    add_session(engine, site.id, "g" * 32, "g1" * 16, "clk_f2", earlier_today())
    backend.post(
        "/api/v1/track/lead",
        {"clickId": "clk_f1", "eventName": "Sign Up", "customerExternalId": "fa"},
    )
    backend.post(
        "/api/v1/track/lead",
        {"clickId": "clk_f2", "eventName": "Sign Up", "customerExternalId": "fb"},
    )
    backend.post(
        "/api/v1/track/sale",
        {"customerExternalId": "fa", "amount": 1000, "currency": "EUR", "invoiceId": "f_inv"},
    )
    backend.conversion("f_inv")
    steps = backend.funnel()["steps"]
    assert [s["count"] for s in steps] == [2, 2, 1]
    assert steps[1]["conversionRate"] == 1.0 and steps[2]["conversionRate"] == 0.5
    assert steps[2]["dropoffRate"] == 0.5
    today = datetime.now(UTC).date().isoformat()
    series = backend.get(f"/api/v1/analytics/timeseries?start={today}&end={today}")["data"]
    assert series == [
        {
            "date": today,
            "clicks": 2,
            "leads": 2,
            "sales": 1,
            "revenue": {"EUR": 1000},
            "browserSales": 0,
            "browserRevenue": {},
        }
    ]
    bad = requests.get(
        backend.url + "/api/v1/analytics/funnel?start=yesterday",
        headers=backend.headers,
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["fields"][0]["field"] == "start"


def test_a_full_batch_of_500_is_accepted_past_the_64k_body_limit(backend, engine, worker):
    events = [
        {
            "type": "conversion",
            "data": {
                "name": "Paid",
                "order_id": f"full_{n}",
                "value": 100,
                "currency": "EUR",
                "metadata": {"note": "x" * 100},
            },
        }
        for n in range(500)
    ]
    raw = json.dumps({"events": events})
    assert len(raw) > 64 * 1024
    body = backend.post("/api/v1/batch", {"events": events}).json()
    assert body["counts"] == {"accepted": 500}
    wait_until(
        lambda: len(backend.get("/api/v1/conversions?limit=500")["data"]) == 500,
        30,
        "500 stored conversions",
    )


def test_a_newer_updated_at_with_the_same_status_advances_the_order(backend, worker):
    t0, t1 = iso(-timedelta(hours=2)), iso(-timedelta(hours=1))
    half = iso(-timedelta(minutes=90))
    post = lambda **c: backend.post("/api/webhooks/orders", selektable_order("o3", **c)).json()  # noqa: E731
    assert post(status="processing", updatedAt=t0)["duplicate"] is False
    assert post(status="processing", updatedAt=t1)["updated"] is True
    assert post(status="processing", updatedAt=t1)["duplicate"] is True
    assert post(status="on-hold", updatedAt=half)["stale"] is True
    backend.conversion("o3", status="processing")


def test_analytics_dates_out_of_range_are_a_400_not_a_crash(backend):
    for query in ("end=9999-12-31", "end=0001-01-05", "start=0001-01-01&end=0001-01-02"):
        response = requests.get(
            f"{backend.url}/api/v1/analytics/funnel?{query}", headers=backend.headers, timeout=10
        )
        assert response.status_code == 400, query
        assert response.json()["error"]["fields"][0]["field"] in ("start", "end")


def test_bot_clicks_can_be_left_out_of_the_counts(backend, site, engine):
    from sqlalchemy import update

    add_session(engine, site.id, "h" * 32, "h1" * 16, "clk_human", earlier_today())
    add_session(engine, site.id, "r" * 32, "r1" * 16, "clk_robot", earlier_today())
    with engine.begin() as conn:
        conn.execute(
            update(store.sessions).where(store.sessions.c.click_id == "clk_robot").values(bot=True)
        )
    today = datetime.now(UTC).date().isoformat()
    assert backend.funnel()["steps"][0]["count"] == 2
    assert backend.get("/api/v1/analytics/funnel?excludeBots=1")["steps"][0]["count"] == 1
    series = backend.get(f"/api/v1/analytics/timeseries?start={today}&end={today}&excludeBots=1")
    assert series["data"][0]["clicks"] == 1
