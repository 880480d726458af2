"""Touches from every channel, attributed and reported: real HTTP, a real worker, real SQLite.

Visits are registered as the tag registers them (``POST /api/v1/sessions`` with the
publishable key); purchases come through the order webhook and the browser beacon. The
expected report rows are summed here from what each test sent, not by the code under test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from firsttag import store
from sqlalchemy import select

from tests.support import wait_until
from tests.test_tracking import Backend, selektable_order

ORIGIN = "https://shop.example"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)

# Visits: (visitor, session, landing URL, referrer, user agent, channel, source, device)
VISITS = [
    ("a" * 32, "a1" * 16, "/?utm_source=newsletter&utm_medium=email&utm_campaign=bf", None,
     IPHONE, "email", "newsletter", "mobile"),
    ("b" * 32, "b1" * 16, "/p/mug?gclid=EAIaIQob", "https://www.google.com/",
     WINDOWS, "paid search", "google", "desktop"),
    ("c" * 32, "c1" * 16, "/blog", "https://www.google.de/", WINDOWS,
     "organic search", "google", "desktop"),
    ("c" * 32, "c2" * 16, "/", None, WINDOWS, "direct", None, "desktop"),
    ("d" * 32, "d1" * 16, "/", None, IPHONE, "direct", None, "mobile"),
    ("e" * 32, "e1" * 16, "/book", "https://blog.example.org/review", IPHONE,
     "referral", "blog.example.org", "mobile"),
]  # fmt: skip

# Orders: (order ID, visitor, session, value, currency; None value: a lead) and the channel
# each model credits.
ORDERS = [
    ("o_a", "a" * 32, "a1" * 16, 2500, "EUR", {"lastNonDirect": "email", "lastTouch": "email"}),
    ("o_b1", "b" * 32, "b1" * 16, 4000, "EUR", {"lastNonDirect": "paid search"}),
    ("o_b2", "b" * 32, "b1" * 16, 1000, "USD", {"lastNonDirect": "paid search"}),
    ("o_c", "c" * 32, "c2" * 16, 700, "EUR", {"lastNonDirect": "organic search",
                                              "lastTouch": "direct",
                                              "firstTouch": "organic search"}),
    ("o_e", "e" * 32, "e1" * 16, None, "EUR", {"lastNonDirect": "referral"}),
]  # fmt: skip

#: A browser-reported purchase of visitor b: kept apart from confirmed revenue.
BEACON = ("b" * 32, "b1" * 16, 900, "EUR")


@pytest.fixture
def backend(live_url, site_and_secret, config) -> Backend:
    return Backend(live_url, site_and_secret[1], config.redis_url)


def register(url: str, site, visitor, session, path, referrer, user_agent) -> str:
    """Register a visit as the tag does; its signed session key."""
    body = {"siteKey": site.site_key, "visitorId": visitor, "sessionId": session}
    body["url"] = ORIGIN + path
    if referrer:
        body["referrer"] = referrer
    response = requests.post(
        url + "/api/v1/sessions",
        data=json.dumps(body),
        headers={
            "Origin": ORIGIN,
            "Content-Type": "text/plain;charset=UTF-8",
            "User-Agent": user_agent,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["sessionKey"]


def stored_sessions(engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(store.sessions)).mappings().all()
    return {r["session_id"]: r for r in rows}


@pytest.fixture
def journeys(backend, site, engine, worker) -> Backend:
    """Every visit registered and stored, then every order and the beacon stored."""
    for visitor, session, path, referrer, ua, *_ in VISITS:
        register(backend.url, site, visitor, session, path, referrer, ua)
    wait_until(lambda: len(stored_sessions(engine)) == len(VISITS), 20, "the sessions")
    for order_id, visitor, session, value, currency, _ in ORDERS:
        changes = {"visitorId": visitor, "sessionId": session, "currency": currency}
        if value is None:
            changes.update(totalCents=0, items=[])
        else:
            changes.update(
                totalCents=value,
                items=[{"productId": "p", "quantity": 1, "priceCents": value, "totalCents": value}],
            )
        response = backend.post("/api/webhooks/orders", selektable_order(order_id, **changes))
        assert response.status_code == 200, response.text
    visitor, session, value, currency = BEACON
    beacon = {
        "siteKey": site.site_key,
        "id": "beacon" + "0" * 10,
        "name": "Purchase",
        "visitorId": visitor,
        "sessionId": session,
        "orderId": "web_b",
        "value": value,
        "currency": currency,
    }
    response = requests.post(
        backend.url + "/api/v1/beacon",
        data=json.dumps(beacon),
        headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"},
        timeout=30,
    )
    assert response.status_code in (200, 202), response.text
    for order_id, *_ in ORDERS:
        backend.conversion(order_id)
    backend.conversion("beacon" + "0" * 10)
    return backend


def expected_rows(dimension_of_visit, model: str = "lastNonDirect") -> dict[Any, dict[str, Any]]:
    """The breakdown computed from VISITS, ORDERS and BEACON alone."""
    rows: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {
            "sessions": 0,
            "leads": 0,
            "sales": 0,
            "browserSales": 0,
            "revenue": {},
            "browserRevenue": {},
        }
    )
    visit_by_session = {v[1]: v for v in VISITS}
    for visit in VISITS:
        rows[dimension_of_visit(visit)]["sessions"] += 1
    channel_visit = {}  # the first visit of each channel, to name the credited group
    for visit in VISITS:
        channel_visit.setdefault((visit[0], visit[5]), visit)
    for _, visitor, _session, value, currency, credited in ORDERS:
        channel = credited.get(model, credited["lastNonDirect"])
        key = dimension_of_visit(channel_visit[visitor, channel])
        if value is None:
            rows[key]["leads"] += 1
        else:
            rows[key]["sales"] += 1
            rows[key]["revenue"][currency] = rows[key]["revenue"].get(currency, 0) + value
    visitor, session, value, currency = BEACON
    key = dimension_of_visit(visit_by_session[session])
    rows[key]["browserSales"] += 1
    rows[key]["browserRevenue"][currency] = value
    for row in rows.values():
        row["conversionRate"] = round(row["sales"] / row["sessions"], 4)
    return dict(rows)


def breakdown(backend: Backend, query: str) -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    return backend.get(f"/api/v1/analytics/breakdown?start={today}&end={today}&{query}")


def as_expected(data: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    keys = ("sessions", "leads", "sales", "browserSales", "revenue", "browserRevenue")
    return {
        r["group"]: {**{k: r[k] for k in keys}, "conversionRate": r["conversionRate"]} for r in data
    }


def test_each_visit_is_stored_with_its_touch(journeys, engine):
    rows = stored_sessions(engine)
    for _, session, path, _, _, channel, source, dev in VISITS:
        row = rows[session]
        assert (row["channel"], row["source"], row["device"]) == (channel, source, dev), session
        assert row["landing_page"] == path.split("?")[0]
    assert rows["a1" * 16]["campaign"] == "bf" and rows["a1" * 16]["medium"] == "email"
    assert (rows["b1" * 16]["click_id_type"], rows["b1" * 16]["click_id_value"]) == (
        "gclid",
        "EAIaIQob",
    )


def test_the_session_api_shows_the_touch(backend, site, engine, worker):
    key = register(
        backend.url,
        site,
        "f" * 32,
        "f1" * 16,
        "/?utm_source=Newsletter&utm_medium=email&utm_campaign=bf",
        None,
        IPHONE,
    )
    session = wait_until(
        lambda: (
            (
                r := requests.get(
                    f"{backend.url}/api/v1/sessions/{key}", headers=backend.headers, timeout=30
                )
            )
            and r.ok
            and r.json()
        ),
        20,
        "the session's touch",
    )
    touch = session["touch"]
    assert (touch["channel"], touch["source"], touch["campaign"], touch["device"]) == (
        "email",
        "newsletter",
        "bf",
        "mobile",
    )


def test_attribution_names_first_last_and_last_non_direct_touch(journeys):
    a = journeys.conversion("o_a")["attribution"]
    assert a["type"] == "direct"
    touch = a["models"]["lastNonDirect"]
    assert (touch["channel"], touch["source"], touch["medium"], touch["campaign"]) == (
        "email",
        "newsletter",
        "email",
        "bf",
    )
    b = journeys.conversion("o_b1")["attribution"]["models"]["lastNonDirect"]
    assert (b["channel"], b["source"], b["clickIdType"], b["clickIdValue"]) == (
        "paid search",
        "google",
        "gclid",
        "EAIaIQob",
    )
    c = journeys.conversion("o_c")["attribution"]
    assert c["type"] == "assisted" and c["touches"] == 1  # the direct visit is no touch
    assert c["models"]["firstTouch"]["channel"] == "organic search"
    assert c["models"]["lastTouch"]["channel"] == "direct"
    assert c["models"]["lastNonDirect"]["channel"] == "organic search"
    assert c["lastTouch"]["sessionId"] == "c1" * 16


@pytest.mark.parametrize("model", ["lastNonDirect", "lastTouch", "firstTouch"])
def test_breakdown_by_channel_per_model(journeys, model):
    got = breakdown(journeys, f"groupBy=channel&model={model}")
    assert got["total"] == len(got["data"]) == 5
    assert as_expected(got["data"]) == expected_rows(lambda v: v[5], model)
    sessions = [r["sessions"] for r in got["data"]]
    assert sessions == sorted(sessions, reverse=True)


@pytest.mark.parametrize(
    ("group", "of_visit"),
    [
        ("source", lambda v: v[6]),
        ("device", lambda v: v[7]),
        ("landingPage", lambda v: v[2].split("?")[0]),
    ],
)
def test_breakdown_by_other_dimensions(journeys, group, of_visit):
    got = breakdown(journeys, f"groupBy={group}&limit=500")
    assert as_expected(got["data"]) == expected_rows(of_visit)


def test_filter_sort_and_pages(journeys):
    only = breakdown(journeys, "groupBy=source&filter=channel:email&filter=channel:paid+search")
    assert [r["group"] for r in only["data"]] == ["google", "newsletter"]  # tie on sessions
    direct = breakdown(journeys, "groupBy=device&filter=channel:(none)")
    assert direct["data"] == []  # every visit has a channel
    by_money = breakdown(journeys, "groupBy=channel&sort=revenue.EUR&limit=2")
    assert [r["group"] for r in by_money["data"]] == ["paid search", "email"]
    assert by_money["nextOffset"] == 2 and by_money["total"] == 5
    rest = breakdown(journeys, "groupBy=channel&sort=revenue.EUR&limit=2&offset=2")
    assert rest["data"][0]["group"] == "organic search"
    ascending = breakdown(journeys, "groupBy=channel&sort=group&order=asc")
    assert [r["group"] for r in ascending["data"]] == sorted(expected_rows(lambda v: v[5]))


def test_breakdown_by_attribution_type(journeys):
    got = breakdown(journeys, "groupBy=attributionModel")
    rows = {r["group"]: r for r in got["data"]}
    assert rows["direct"]["sales"] == 3 and rows["direct"]["leads"] == 1
    assert rows["assisted"]["sales"] == 1 and rows["assisted"]["revenue"] == {"EUR": 700}
    assert rows["direct"]["sessions"] is None  # visits have no attribution


def test_funnel_and_timeseries_grouped(journeys):
    today = datetime.now(UTC).date().isoformat()
    expected = expected_rows(lambda v: v[5])
    funnel = journeys.get(f"/api/v1/analytics/funnel?groupBy=channel&start={today}&end={today}")
    for g in funnel["groups"]:
        steps = {s["name"]: s["count"] for s in g["steps"]}
        want = expected[g["group"]]
        assert steps == {
            "sessions": want["sessions"],
            "leads": want["leads"],
            "sales": want["sales"],
        }
        assert g["revenue"] == want["revenue"]
    series = journeys.get(
        f"/api/v1/analytics/timeseries?groupBy=channel&filter=channel:email&start={today}&end={today}"
    )
    (day,) = series["data"]
    assert [(g["group"], g["sales"], g["revenue"]) for g in day["groups"]] == [
        ("email", 1, {"EUR": 2500})
    ]
    plain = journeys.funnel()  # without groupBy: as before
    assert plain["revenue"] == {"EUR": 2500 + 4000 + 700, "USD": 1000}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "groupBy"),
        ("groupBy=country", "groupBy"),
        ("groupBy=channel&filter=country:de", "filter"),
        ("groupBy=channel&filter=channel", "filter"),
        ("groupBy=channel&model=linear", "model"),
        ("groupBy=channel&sort=price", "sort"),
        ("groupBy=channel&sort=revenue.euro", "sort"),
        ("groupBy=channel&order=up", "order"),
        ("groupBy=channel&limit=0", "limit"),
        ("groupBy=channel&limit=501", "limit"),
        ("groupBy=channel&offset=-1", "offset"),
    ],
)
def test_bad_report_arguments_are_400_naming_the_field(backend, query, field):
    response = requests.get(
        backend.url + "/api/v1/analytics/breakdown?" + query, headers=backend.headers, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"][0]["field"] == field
    grouped = requests.get(
        backend.url + "/api/v1/analytics/funnel?groupBy=nope", headers=backend.headers, timeout=30
    )
    assert grouped.status_code == 400
    assert grouped.json()["error"]["fields"][0]["field"] == "groupBy"
