"""Trust levels for money, over real HTTP, a real RQ worker and a real SQLite file.

A value a browser reports with the public key is a claim; revenue is what a back end
confirmed with the secret key. Set FIRSTTAG_TEST_DATABASE_URL to run these on PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from firsttag import money, store
from firsttag.sites import DEFAULT_MAX_BROWSER_VALUE, Settings, create_site
from sqlalchemy import insert

from tests.support import wait_until

ORIGIN = "https://shop.example"
MAX = money.MAX_MINOR_UNITS


class Shop:
    """A site seen from both sides: its pages (public key) and its back end (secret key)."""

    def __init__(self, url: str, engine: Any, settings: Settings | None = None) -> None:
        self.url = url
        self.site, secret = create_site(engine, "Shop", [ORIGIN], settings)
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def beacon(self, value: int, currency: str = "EUR", name: str = "Purchase") -> Any:
        """What firsttag.convert(name, {value, currency}) sends: text/plain, public key."""
        body = {
            "siteKey": self.site.site_key,
            "id": secrets.token_hex(16),
            "name": name,
            "visitorId": "v" * 32,
            "value": value,
            "currency": currency,
        }
        response = requests.post(
            self.url + "/api/v1/beacon",
            data=json.dumps(body),
            headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"},
            timeout=30,
        )
        response.event_id = body["id"]  # type: ignore[attr-defined]
        return response

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=60)

    def get(self, path: str) -> Any:
        response = requests.get(self.url + path, headers=self.headers, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def stored(self, count: int) -> list[dict[str, Any]]:
        """Poll until ``count`` conversions are stored; returns them newest first."""
        return wait_until(
            lambda: (
                (d := self.get("/api/v1/conversions?limit=500")["data"]) and len(d) >= count and d
            ),
            30,
            f"{count} stored conversions",
        )

    def today(self) -> dict[str, Any]:
        day = datetime.now(UTC).date().isoformat()
        return self.get(f"/api/v1/analytics/timeseries?start={day}&end={day}")["data"][0]


def fields_of(response: requests.Response) -> list[str]:
    assert response.status_code == 400, response.text
    return [f["field"] for f in response.json()["error"]["fields"]]


@pytest.fixture
def shop(live_url, engine) -> Shop:
    return Shop(live_url, engine)


def test_a_browser_value_never_moves_confirmed_revenue(shop, worker):
    confirmed = shop.post(
        "/api/v1/track/sale",
        {"customerExternalId": "c1", "amount": 2500, "currency": "EUR", "clickId": "clk1"},
    )
    assert confirmed.status_code == 200, confirmed.text
    # The largest value the site allows, twice: a fake purchase anyone can send.
    for _ in range(2):
        assert shop.beacon(DEFAULT_MAX_BROWSER_VALUE).status_code == 202
    rows = shop.stored(3)

    assert {(c["source"], c["value"], c["confirmed"]) for c in rows} == {
        ("track", 2500, True),
        ("browser", DEFAULT_MAX_BROWSER_VALUE, False),
    }
    funnel = shop.get("/api/v1/analytics/funnel")
    assert funnel["revenue"] == {"EUR": 2500}
    assert funnel["steps"][2] == {
        "name": "sales",
        "count": 1,
        "conversionRate": None,
        "dropoffRate": None,
    }
    assert funnel["browserRevenue"] == {"EUR": 2 * DEFAULT_MAX_BROWSER_VALUE}
    assert (funnel["browserSales"], funnel["countsBrowserRevenue"]) == (2, False)
    day = shop.today()
    assert (day["sales"], day["revenue"]) == (1, {"EUR": 2500})
    assert (day["browserSales"], day["browserRevenue"]) == (
        2,
        {"EUR": 2 * DEFAULT_MAX_BROWSER_VALUE},
    )


def test_a_site_that_opts_in_counts_browser_revenue(live_url, engine, worker):
    shop = Shop(live_url, engine, Settings(count_browser_revenue=True))
    shop.post(
        "/api/v1/conversions", {"name": "Paid", "order_id": "o1", "value": 700, "currency": "EUR"}
    )
    assert shop.beacon(4900).status_code == 202
    assert shop.beacon(300, currency="JPY").status_code == 202
    shop.stored(3)

    funnel = shop.get("/api/v1/analytics/funnel")
    assert funnel["revenue"] == {"EUR": 700 + 4900, "JPY": 300}
    assert funnel["steps"][2]["count"] == 3
    assert funnel["browserRevenue"] == {"EUR": 4900, "JPY": 300}
    assert (funnel["browserSales"], funnel["countsBrowserRevenue"]) == (2, True)
    day = shop.today()
    assert (day["sales"], day["revenue"]) == (3, {"EUR": 5600, "JPY": 300})


def test_a_browser_value_over_the_site_bound_is_refused_naming_value(live_url, engine, worker):
    default = Shop(live_url, engine)
    assert fields_of(default.beacon(DEFAULT_MAX_BROWSER_VALUE + 1)) == ["value"]
    assert fields_of(default.beacon(MAX + 1)) == ["value"]  # past any site's bound

    shop = Shop(live_url, engine, Settings(max_browser_value=5000))
    refused = shop.beacon(5001)
    assert fields_of(refused) == ["value"]
    assert "5000" in refused.json()["error"]["fields"][0]["message"]
    accepted = shop.beacon(5000)
    assert accepted.status_code == 202
    # The refused one was not queued: once the accepted one is stored, it is alone.
    rows = shop.stored(1)
    assert [c["eventId"] for c in rows] == [accepted.event_id]  # type: ignore[attr-defined]
    assert default.get("/api/v1/conversions")["data"] == []


def test_money_settings_from_the_cli(tmp_path):
    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "firsttag.ops.cli", "sites", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    site = cli("create", "--name", "S", "--origin", ORIGIN)
    assert (site["settings"]["countBrowserRevenue"], site["settings"]["maxBrowserValue"]) == (
        False,
        DEFAULT_MAX_BROWSER_VALUE,
    )
    updated = cli("update", site["id"], "--count-browser-revenue", "--max-browser-value", "250")
    assert (updated["settings"]["countBrowserRevenue"], updated["settings"]["maxBrowserValue"]) == (
        True,
        250,
    )
    bad = subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", "sites", "update", site["id"]]
        + ["--max-browser-value", str(MAX + 1), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--max-browser-value" in bad.stderr


#: More sales at the maximum than a 64-bit SUM holds: 2**63 / 10**15 ≈ 9,223.
EXTREME_ROWS = 10_000


def test_server_values_past_the_maximum_are_refused_naming_the_field(shop):
    order = {
        "orderId": "big",
        "storeId": "s",
        "organizationId": "o",
        "visitorId": "v",
        "sessionId": "s",
        "totalCents": MAX + 1,
        "currency": "EUR",
        "platform": "custom",
        "status": "completed",
        "orderCreatedAt": datetime.now(UTC).isoformat(),
        "items": [],
    }
    assert fields_of(shop.post("/api/webhooks/orders", order)) == ["totalCents"]
    sale = {"customerExternalId": "c", "amount": MAX + 1, "clickId": "clk"}
    assert fields_of(shop.post("/api/v1/track/sale", sale)) == ["amount"]
    conversion = {"name": "Paid", "value": MAX + 1, "currency": "EUR"}
    assert fields_of(shop.post("/api/v1/conversions", conversion)) == ["value"]
    event = {"event": "sale", "customerExternalId": "c", "amount": "1e13", "currency": "EUR"}
    too_big = requests.post(
        shop.url + "/api/v1/events",
        data=json.dumps(event).replace('"1e13"', "10000000000000.01"),
        headers=shop.headers,
        timeout=30,
    )
    assert fields_of(too_big) == ["amount"]


def test_extreme_sums_stay_exact(live_url, engine, worker):
    shop = Shop(live_url, engine, Settings(count_browser_revenue=True, max_browser_value=MAX))
    # Through the front door and the worker: a full batch and three beacons at the maximum.
    events = [
        {
            "type": "conversion",
            "data": {"name": "Paid", "order_id": f"x{n}", "value": MAX, "currency": "EUR"},
        }
        for n in range(500)
    ]
    answer = shop.post("/api/v1/batch", {"events": events})
    assert answer.json()["counts"] == {"accepted": 500}, answer.text
    for _ in range(3):
        assert shop.beacon(MAX).status_code == 202
    # The rest as the worker stores them, written at once: the pipeline's speed is not
    # what this test is about, and 10,000 events through it take a minute.
    now = store.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(store.conversions),
            [
                {
                    "site_id": shop.site.id,
                    "dedup_key": f"conversion:bulk{n}",
                    "kind": "sale",
                    "source": "server",
                    "name": "Paid",
                    "value": MAX,
                    "currency": "EUR",
                    "occurred_at": now,
                    "received_at": now,
                }
                for n in range(EXTREME_ROWS - 500)
            ],
        )
    total = (EXTREME_ROWS + 3) * MAX
    assert total > 2**63

    def funnel() -> Any:
        response = requests.get(
            shop.url + "/api/v1/analytics/funnel", headers=shop.headers, timeout=60
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["steps"][2]["count"] == EXTREME_ROWS + 3 else None

    body = wait_until(funnel, 120, f"{EXTREME_ROWS + 3} stored sales")
    assert body["revenue"] == {"EUR": total}
    assert body["browserRevenue"] == {"EUR": 3 * MAX}
    day = shop.today()
    assert (day["revenue"], day["browserRevenue"]) == ({"EUR": total}, {"EUR": 3 * MAX})
