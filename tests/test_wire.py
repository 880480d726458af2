"""The event wire format: every kind round-trips, and a worker reads the previous version.

A rolling deploy upgrades workers first, so for a while a new worker drains events that
an old web tier wrote. The version-1 events below have the exact shape the web tier
wrote before the format had a version: no ``"v"``, an optional ``"claims"``.
"""

from __future__ import annotations

import json

import pytest
from firsttag import store, wire
from firsttag.events.buffer import EventBuffer
from redis import Redis
from sqlalchemy import func, select

from tests.support import wait_until

NOW = "2026-03-01T12:00:00.000000Z"

BODIES: list[wire.Body] = [
    wire.Session("s1", "v" * 32, "c1", "https://shop.example/", None, "Mozilla/5.0", False),
    wire.Verification("s1"),
    wire.Customer("cus_1", "Big Red Caribou", "a@example.com", None, "c1"),
    wire.Conversion(
        dedup_key="sale:inv_1",
        kind="sale",
        source="track",
        name="Purchase",
        occurred_at=NOW,
        customer_id="cus_1",
        value=1999,
        currency="EUR",
        details={"invoiceId": "inv_1"},
        metadata={"plan": "pro"},
        fingerprint={"amount": 1999},
        click_from_customer="cus_1",
    ),
    wire.Erasure("cus_1"),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.KIND)
def test_every_kind_round_trips_with_and_without_claims(body):
    for claims in ({}, {"firsttag:claim:site:key": '{"fields":{}}'}):
        event = wire.Event("site", NOW, body, claims)
        raw = wire.encode(event)
        assert json.loads(raw)["v"] == wire.VERSION
        assert wire.decode(raw) == event
        assert wire.envelope(raw.encode()) == ("site", NOW)  # kind, site, receivedAt first


def v1(kind: str, site_id: str, data: dict, claims: dict | None = None) -> str:
    """An event as the web tier wrote it in format version 1."""
    event = {"kind": kind, "site": site_id, "receivedAt": NOW, "data": data}
    if claims:
        event["claims"] = claims
    return json.dumps(event, separators=(",", ":"))


V1_CONVERSION = {
    "visitorId": "v" * 32,
    "sessionId": "s1",
    "clickId": None,
    "customerId": "cus_1",
    "orderId": "inv_1",
    "value": 1999,
    "currency": "EUR",
    "status": None,
    "stateVersion": None,
    "details": {"invoiceId": "inv_1"},
    "metadata": None,
    "url": None,
    "refunded": 0,
    "dedupKey": "sale:inv_1",
    "kind": "sale",
    "source": "track",
    "name": "Purchase",
    "occurredAt": NOW,
    "fingerprint": {"amount": 1999},
    "clickFromCustomer": "cus_1",
}


def test_version_1_decodes_to_the_same_records():
    raw = v1("conversion", "site", V1_CONVERSION, {"k": "v"})
    event = wire.decode(raw)
    assert event.claims == {"k": "v"}
    assert wire.data_of(event.body) == V1_CONVERSION  # every field, none renamed
    assert event.body == wire.body_from("conversion", V1_CONVERSION)
    assert event.body.dedup_key == "sale:inv_1" and event.body.click_from_customer == "cus_1"


def test_a_version_this_worker_does_not_know_is_refused_not_guessed():
    newer = json.loads(wire.encode(wire.Event("site", NOW, wire.Verification("s1"))))
    newer["v"] = wire.VERSION + 1
    with pytest.raises(wire.WireError, match="format version"):
        wire.decode(json.dumps(newer))
    with pytest.raises(wire.UnknownKind):
        wire.decode('{"kind":"unknown"}')
    with pytest.raises(wire.WireError, match="without dedupKey"):
        wire.decode(v1("conversion", "site", {"occurredAt": NOW}))


def test_a_worker_stores_events_written_in_the_previous_version(config, engine, site, worker):
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    session = {
        "sessionId": "s1",
        "visitorId": "v" * 32,
        "clickId": "c1",
        "url": "https://shop.example/",
        "referrer": None,
        "userAgent": "Mozilla/5.0",
        "bot": False,
    }
    customer = {
        "externalId": "cus_1",
        "name": "Big Red Caribou",
        "email": None,
        "avatar": None,
        "clickId": "c1",
    }
    claims = {f"firsttag:claim:{site.id}:sale:inv_1": '{"fields":{}}'}
    buffer.push_many(
        site.id,
        [
            v1("session", site.id, session),
            v1("verification", site.id, {"sessionId": "s1"}),
            v1("customer", site.id, customer),
            v1("conversion", site.id, V1_CONVERSION, claims),
        ],
    )

    def rows(table):
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    wait_until(lambda: rows(store.conversions) == 1, 30, "the version-1 conversion stored")
    for table in (store.sessions, store.session_verifications, store.customers):
        assert rows(table) == 1, table.name
    with engine.connect() as conn:
        stored = conn.execute(select(store.conversions)).mappings().one()
    assert stored["click_id"] == "c1"  # taken from the version-1 customer
    assert stored["value"] == 1999 and stored["received_at"] == NOW
