"""Dub's own Python SDK (``dub`` 0.39.0) reads and manages what firsttag stored.

A real firsttag server over HTTP, a real Redis and RQ worker, a real SQLite file (or
PostgreSQL). Events go in as Dub users send them (``POST /api/v1/track/…``); the SDK reads
them back: customers (get, list with pages, update, delete = erasure), events, analytics.
Expected numbers are computed here from what was sent, not read from firsttag.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from dub import Dub
from dub.models.errors import BadRequest, NotFound
from firsttag import store
from firsttag.customer_ids import customer_id
from sqlalchemy import select

from tests.support import wait_until

ORIGIN = "https://shop.example"


class Shop:
    """A Dub user's back end and browser, sending raw HTTP as Dub's docs show."""

    def __init__(self, url: str, site: Any, secret: str) -> None:
        self.url, self.site, self.secret = url, site, secret

    def visit(self, click_id: str, n: int) -> None:
        """A browser landing with ``?dub_id=<click_id>`` (registered by the tag)."""
        answer = requests.post(
            f"{self.url}/api/v1/sessions",
            json={
                "siteKey": self.site.site_key,
                "visitorId": f"visitor-{n:04d}",
                "sessionId": f"session-{n:04d}",
                "url": f"{ORIGIN}/landing?dub_id={click_id}",
                "referrer": "https://news.example/post",
                "clickId": click_id,
            },
            headers={"Origin": ORIGIN},
            timeout=10,
        )
        assert answer.status_code < 300, answer.text

    def track(self, kind: str, body: dict[str, Any]) -> None:
        """``POST /api/v1/track/<kind>`` with the secret key."""
        answer = requests.post(
            f"{self.url}/api/v1/track/{kind}",
            json=body,
            headers={"Authorization": f"Bearer {self.secret}"},
            timeout=15,
        )
        assert answer.status_code < 300, answer.text


@pytest.fixture
def shop(live_url: str, site_and_secret: Any, worker: Any) -> Shop:
    site, secret = site_and_secret
    return Shop(live_url, site, secret)


@pytest.fixture
def dub(shop: Shop) -> Dub:
    """Dub's SDK exactly as a Dub user configures it: a server URL and the secret key."""
    return Dub(token=shop.secret, server_url=f"{shop.url}/api/v1")


def _customers(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.customers)).mappings()]


def _conversions(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.conversions)).mappings()]


def _stored(engine: Any, count: int) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (rows := _conversions(engine)) and len(rows) >= count and rows,
        what=f"{count} stored conversions",
    )


def _lead(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "clickId": f"clk_{n}",
        "eventName": "Sign Up",
        "customerExternalId": f"user-{n}",
        "customerName": f"Person {n}",
        "customerEmail": f"person{n}@mail.example",
        "customerAvatar": f"https://img.example/{n}.png",
        **extra,
    }


def test_customers_get_list_pages_and_update(shop: Shop, dub: Dub, engine: Any) -> None:
    for n in range(1, 4):
        shop.visit(f"clk_{n}", n)
        shop.track("lead", _lead(n))
    _stored(engine, 3)
    wait_until(lambda: len(_customers(engine)) == 3, what="3 customers")

    by_ext = dub.customers.get(request={"id": "ext_user-2"})
    assert by_ext.id == customer_id(shop.site.id, "user-2")
    assert (by_ext.external_id, by_ext.name, by_ext.email) == (
        "user-2",
        "Person 2",
        "person2@mail.example",
    )
    assert dub.customers.get(request={"id": by_ext.id}).external_id == "user-2"

    found = dub.customers.list(request={"email": "person3@mail.example"})
    assert [c.external_id for c in found.result] == ["user-3"]
    searched = dub.customers.list(request={"search": "PERSON 1"})
    assert [c.external_id for c in searched.result] == ["user-1"]

    # Dub's cursor pages (startingAfter: the last customer's ID): every customer once.
    # (The SDK's own next() never fetches a page 2, from Dub either: its JSONPath
    # "$[-1].id" matches nothing in dub 0.39.0, so the cursor is passed here by hand.)
    seen: list[str] = []
    request: dict[str, Any] = {"page_size": 2}
    while page := dub.customers.list(request=request).result:
        assert len(page) <= 2
        seen += [c.external_id for c in page]
        request = {"page_size": 2, "starting_after": page[-1].id}
    assert sorted(seen) == ["user-1", "user-2", "user-3"]
    assert len(seen) == 3
    back = (
        dub.customers.list(request={"page_size": 2, "ending_before": page_ids[-1]})
        if (page_ids := [customer_id(shop.site.id, e) for e in seen])
        else None
    )
    assert back is not None and [c.external_id for c in back.result] == seen[-3:-1]

    updated = dub.customers.update(
        request={
            "id": by_ext.id,
            "request_body": {"name": "Renamed", "email": "new@mail.example"},
        }
    )
    assert (updated.name, updated.email) == ("Renamed", "new@mail.example")
    assert updated.avatar == "https://img.example/2.png"  # not sent, not changed
    row = next(c for c in _customers(engine) if c["external_id"] == "user-2")
    assert (row["name"], row["email"]) == ("Renamed", "new@mail.example")

    # A later lead of the same customer does not undo the update (the worker's upsert
    # keeps an existing customer's data).
    shop.track("lead", _lead(2, eventName="Trial", customerName="Old Name"))
    _stored(engine, 4)
    assert dub.customers.get(request={"id": "ext_user-2"}).name == "Renamed"


def test_unknown_customer_is_404(dub: Dub) -> None:
    # Dub's envelope and code make the SDK raise its typed NotFound, not a generic error.
    for unknown in ("cus_000000000000000000000000", "ext_nobody", "nonsense"):
        with pytest.raises(NotFound) as raised:
            dub.customers.get(request={"id": unknown})
        assert raised.value.status_code == 404


def test_delete_erases_the_person_everywhere_we_keep_it(shop: Shop, dub: Dub, engine: Any) -> None:
    shop.visit("clk_9", 9)
    shop.track("lead", _lead(9, metadata={"plan": "pro", "phone": "+1 555 0100"}))
    shop.track(
        "sale",
        {
            "customerExternalId": "user-9",
            "amount": 4200,
            "currency": "usd",
            "invoiceId": "inv_9",
            "metadata": {"email": "person9@mail.example"},
        },
    )
    shop.track("lead", _lead(10))  # someone else, who must stay
    _stored(engine, 3)

    cus_id = customer_id(shop.site.id, "user-9")
    assert dub.customers.delete(id=cus_id).id == cus_id

    assert [c["external_id"] for c in _customers(engine)] == ["user-10"]
    dump = json.dumps(_conversions(engine))
    for personal in ("user-9", "Person 9", "person9@mail.example", "+1 555 0100"):
        assert personal not in dump
    mine = [c for c in _conversions(engine) if c["customer_id"] is None]
    # What remains: anonymous rows that keep the totals (docs/privacy.md).
    assert sorted((c["kind"], c["value"]) for c in mine) == [("lead", None), ("sale", 4200)]
    assert "user-10" in dump
    with pytest.raises(NotFound):
        dub.customers.get(request={"id": cus_id})


def test_events_queued_before_the_erasure_do_not_bring_the_person_back(
    shop: Shop, dub: Dub, engine: Any, worker: Any
) -> None:
    shop.visit("clk_7", 7)
    shop.track("lead", _lead(7))
    _stored(engine, 1)
    worker.stop()  # the next events wait in Redis, as behind a busy worker
    shop.track("lead", _lead(7, eventName="Trial", customerName="Person 7 again"))
    shop.track("sale", {"customerExternalId": "user-7", "amount": 900, "invoiceId": "inv_7"})
    dub.customers.delete(id="ext_user-7")  # queued behind them
    worker.start()
    rows = _stored(engine, 3)
    wait_until(
        lambda: all(c["customer_id"] is None for c in _conversions(engine)),
        what="the erasure",
    )
    rows = _conversions(engine)
    assert _customers(engine) == []
    assert "user-7" not in json.dumps(rows) and "Person 7" not in json.dumps(rows)
    assert sorted(c["value"] or 0 for c in rows) == [0, 0, 900]

    # After the erasure, a new sign-up of the same ID is new data, stored as sent.
    shop.track("lead", _lead(7, eventName="Return"))
    wait_until(lambda: _customers(engine), what="the new customer")
    assert dub.customers.get(request={"id": "ext_user-7"}).name == "Person 7"


def test_events_and_analytics(shop: Shop, dub: Dub, engine: Any) -> None:
    leads = [1, 2, 3]
    sales = {1: 1500, 2: 2500}
    for n in leads:
        shop.visit(f"clk_{n}", n)
        shop.track("lead", _lead(n))
    for n, amount in sales.items():
        shop.track(
            "sale",
            {"customerExternalId": f"user-{n}", "amount": amount, "invoiceId": f"inv_{n}"},
        )
    shop.track(  # a repeated invoice is one sale
        "sale", {"customerExternalId": "user-1", "amount": 1500, "invoiceId": "inv_1"}
    )
    _stored(engine, len(leads) + len(sales))

    listed = dub.events.list(request={"event": "leads", "interval": "24h"})
    assert sorted(e.customer.external_id for e in listed) == [f"user-{n}" for n in leads]
    assert {e.click.id for e in listed} == {f"clk_{n}" for n in leads}
    assert {e.click.url for e in listed} == {f"{ORIGIN}/landing?dub_id=clk_{n}" for n in leads}
    assert all(e.event_name == "Sign Up" for e in listed)

    sold = dub.events.list(request={"event": "sales"})
    assert sorted((e.customer.external_id, e.sale.amount) for e in sold) == sorted(
        (f"user-{n}", a) for n, a in sales.items()
    )
    assert {e.sale.invoice_id for e in sold} == {f"inv_{n}" for n in sales}
    first_page = dub.events.list(request={"event": "leads", "limit": 2, "page": 1})
    second_page = dub.events.list(request={"event": "leads", "limit": 2, "page": 2})
    assert len(first_page) == 2 and len(second_page) == len(leads) - 2

    count = dub.analytics.retrieve(request={"event": "composite", "group_by": "count"})
    assert (count.clicks, count.leads, count.sales, count.sale_amount) == (
        len(leads),
        len(leads),
        len(sales),
        sum(sales.values()),
    )
    series = dub.analytics.retrieve(
        request={"event": "composite", "group_by": "timeseries", "interval": "7d"}
    )
    assert len(series) in (7, 8)  # days touched by the last 7 x 24 hours
    assert sum(p.leads for p in series) == len(leads)
    assert sum(p.sale_amount for p in series) == sum(sales.values())
    assert all(p.start.endswith("T00:00:00.000Z") for p in series)

    with pytest.raises(BadRequest) as raised:
        dub.analytics.retrieve(request={"group_by": "countries"})
    assert "groupBy" in raised.value.data.error.message


def test_reads_need_the_secret_key(shop: Shop) -> None:
    for path in ("/customers", "/events?event=leads", "/analytics", "/api/v1/customers"):
        assert requests.get(f"{shop.url}{path}", timeout=10).status_code == 401
        pk = {"Authorization": f"Bearer {shop.site.site_key}"}
        assert requests.get(f"{shop.url}{path}", headers=pk, timeout=10).status_code == 403
    bare = Dub(token=shop.secret, server_url=shop.url)  # a bare host as serverURL
    assert bare.customers.list(request={}).result == []
