"""The report pages over real HTTP: the numbers a scripted day produces, filters, CSV, access.

Events go through the real buffer and a real RQ worker into the real store (SQLite, or
PostgreSQL with FIRSTTAG_TEST_DATABASE_URL); pages are fetched over loopback HTTP from
the real app, signed in as a real user. Expected numbers are computed here from the
script, independently of the code under test.
"""

from __future__ import annotations

import csv
import io
import re
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
import requests
from firsttag import store, users
from firsttag.analytics import exports
from firsttag.sites import create_site
from sqlalchemy import insert

from tests.test_dashboard_auth import PASSWORD, log_in
from tests.test_dashboard_rollups import drain
from tests.test_pipeline import event

# The script's events are up to 50 minutes old: the pages are read over the last 7 days,
# not today, which just after midnight UTC would leave the earliest of them out.
NOW = datetime.now(UTC).replace(microsecond=0)


def ts(minutes_ago: int) -> str:
    return store.format_time(NOW - timedelta(minutes=minutes_ago))


def sess(site_id, n, click, bot=False, minutes_ago=30):
    data = {
        "sessionId": f"s{n}",
        "visitorId": f"v{n}",
        "clickId": f"click{n}" if click else None,
        "url": f"https://shop.example/landing{n}",
        "bot": bot,
    }
    return event("session", site_id, ts(minutes_ago), data)


def conv(site_id, key, kind, source, name, n, value=None, currency=None, **extra):
    data = {
        "dedupKey": key,
        "kind": kind,
        "source": source,
        "name": name,
        "visitorId": f"v{n}",
        "sessionId": f"s{n}",
        "value": value,
        "currency": currency,
        "occurredAt": ts(10),
        **extra,
    }
    return event("conversion", site_id, ts(10), data)


#: The script: (what, count) the test expects, computed by hand from SCRIPT below.
EXPECTED = {
    "sessions": 5,  # six sessions, one a bot
    "click-sessions": 3,  # four with a click, one of them the bot
    "leads": 3,
    "sales": 3,  # two confirmed track sales, one completed order; not the cancelled one
    "browser-sales": 1,
}


def script(site_id: str) -> list:
    return [
        sess(site_id, 1, click=True),
        sess(site_id, 2, click=True),
        sess(site_id, 3, click=True),
        sess(site_id, 4, click=True, bot=True),
        sess(site_id, 5, click=False),
        sess(site_id, 6, click=False),
        conv(site_id, "lead:a", "lead", "track", "Sign Up", 1, customerId="cust-a"),
        conv(site_id, "lead:b", "lead", "track", "Sign Up", 2, customerId="cust-b"),
        conv(site_id, "lead:c", "lead", "track", "Demo request", 3),
        conv(site_id, "sale:1", "sale", "track", "Purchase", 1, 5_000, "USD", customerId="cust-a"),
        conv(site_id, "sale:2", "sale", "track", "Purchase", 2, 5_000, "USD"),
        conv(site_id, "browser:x", "sale", "browser", "Purchase", 5, 999, "EUR"),
        conv(site_id, "order:o1", "sale", "order", "Order", 1, 10_000, "EUR", orderId="o1",
             status="completed", stateVersion="0001", refunded=2_500, customerId="cust-a"),
        conv(site_id, "order:o2", "sale", "order", "Order", 2, 8_000, "EUR", orderId="o2",
             status="cancelled", stateVersion="0001"),
    ]  # fmt: skip


@pytest.fixture
def shop(engine, config, worker):
    """A site in UTC with the script drained into it; an owner, and a stranger's site."""
    site, _ = create_site(engine, "Report Shop", ["https://shop.example"])
    other, _ = create_site(engine, "Other Shop", ["https://other.example"])
    users.create_user(engine, "viewer@example.com", PASSWORD)
    users.grant(engine, "viewer@example.com", site.id, "viewer")
    users.create_user(engine, "stranger@example.com", PASSWORD)
    users.grant(engine, "stranger@example.com", other.id, "owner")
    drain(config, script(site.id))
    return site


def tile(page: str, name: str) -> list[str]:
    found = re.search(rf'data-tile="{name}"[^>]*>(.*?)</div>', page, re.S)
    assert found, f"no tile {name}"
    return re.findall(r'class="tile-value"[^>]*>([^<]*)<', found.group(1))


def test_overview_shows_exactly_the_scripted_numbers(live_url, shop):
    browser = log_in(live_url, "viewer@example.com")
    page = browser.get(f"{live_url}/sites/{shop.id}/overview?range=7d", timeout=10)
    assert page.status_code == 200
    html = page.text
    assert tile(html, "click-sessions") == ["3"]
    assert f"of {EXPECTED['sessions']} sessions" in html
    assert tile(html, "leads") == ["3"]
    assert tile(html, "sales") == ["3"]
    assert "1 reported by browsers" in html
    # Confirmed revenue net of refunds, per currency; the browser's 9.99 EUR kept apart.
    assert tile(html, "revenue") == ["EUR 75.00", "USD 100.00"]
    assert tile(html, "browser-revenue") == ["EUR 9.99"]
    assert tile(html, "conversion-rate") == ["100.0%"]  # 3 sales / 3 click sessions
    funnel = re.findall(r'data-step="([\w-]+)">\s*<span class="funnel-label">[^<]*</span>\s*'
                        r'<span class="funnel-count">(\d+)<', html)  # fmt: skip
    assert funnel == [("click-sessions", "3"), ("leads", "3"), ("sales", "3")]
    names = re.search(r'data-dimension="name".*?</table>', html, re.S).group(0)
    rows = re.findall(r'data-value="([^"]+)">[^<]*</a></th>\s*<td class="num">(\d+)</td>\s*'
                      r'<td class="num">(\d+)</td>', names)  # fmt: skip
    assert sorted(rows) == sorted(
        [("Sign Up", "2", "0"), ("Purchase", "0", "2"), ("Demo request", "1", "0"),
         ("Order", "0", "1")]  # the cancelled order counts nowhere; the browser sale apart
    )  # fmt: skip


def test_a_filter_in_the_url_narrows_every_conversion_panel(live_url, shop):
    browser = log_in(live_url, "viewer@example.com")
    html = browser.get(
        f"{live_url}/sites/{shop.id}/overview", params={"range": "7d", "name": "Sign Up"},
        timeout=10,
    ).text  # fmt: skip
    assert tile(html, "leads") == ["2"]
    assert tile(html, "sales") == ["0"]
    assert tile(html, "revenue") == ["0"]
    names = re.search(r'data-dimension="name".*?</table>', html, re.S).group(0)
    assert re.findall(r'data-value="([^"]+)"', names) == ["Sign Up"]
    assert 'data-filter="name"' in html  # the active filter, removable
    days = browser.get(
        f"{live_url}/sites/{shop.id}/export/days.csv",
        params={"range": "7d", "name": "Sign Up"}, timeout=10,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(days.text)))
    assert len(rows) == 7  # a row per day of the range
    assert sum(int(r["leads"]) for r in rows) == 2 and sum(int(r["sales"]) for r in rows) == 0


def test_conversions_csv_is_complete_filtered_and_iso_dated(live_url, shop):
    browser = log_in(live_url, "viewer@example.com")
    answer = browser.get(f"{live_url}/sites/{shop.id}/export/conversions.csv", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 8
    assert {r["event_id"] for r in rows} >= {"a", "b", "o1", "x"}
    for r in rows:
        assert datetime.fromisoformat(r["occurred_at"]).tzinfo is not None
    order = next(r for r in rows if r["order_id"] == "o1")
    assert (order["value"], order["refunded"], order["net"], order["currency"]) == (
        "100.00", "25.00", "75.00", "EUR",
    )  # fmt: skip
    assert next(r for r in rows if r["source"] == "browser")["confirmed"] == "false"
    leads = browser.get(
        f"{live_url}/sites/{shop.id}/export/conversions.csv", params={"kind": "lead"}, timeout=10
    )
    assert [r["kind"] for r in csv.DictReader(io.StringIO(leads.text))] == ["lead"] * 3


def test_every_report_and_export_is_access_checked(live_url, shop):
    paths = [
        f"/sites/{shop.id}/overview",
        f"/sites/{shop.id}/conversions",
        f"/sites/{shop.id}/conversions/rows?after=0",
        f"/sites/{shop.id}/customers/cust-a",
        f"/sites/{shop.id}/export/conversions.csv",
        f"/sites/{shop.id}/export/days.csv",
        f"/sites/{shop.id}/export/name.csv",
    ]
    stranger = log_in(live_url, "stranger@example.com")
    anonymous = requests.Session()
    for path in paths:
        refused = stranger.get(live_url + path, timeout=10)
        assert refused.status_code == 403, path
        assert "do not have access" in refused.text and "Purchase" not in refused.text
        away = anonymous.get(live_url + path, timeout=10, allow_redirects=False)
        assert away.status_code == 302 and "/login" in away.headers["Location"], path


def test_conversions_list_live_rows_detail_and_customer_journey(live_url, shop, config):
    browser = log_in(live_url, "viewer@example.com")
    listing = browser.get(f"{live_url}/sites/{shop.id}/conversions", timeout=10).text
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', listing)]
    assert len(ids) == 8 and ids == sorted(ids, reverse=True)  # newest first
    assert 'src="/dashboard/static/live.js"' in listing
    only_orders = browser.get(
        f"{live_url}/sites/{shop.id}/conversions", params={"source": "order"}, timeout=10
    ).text
    assert len(re.findall(r"<tr data-id=", only_orders)) == 2
    # The live fragment: nothing newer yet, then the new conversion only.
    rows_url = f"{live_url}/sites/{shop.id}/conversions/rows"
    assert "<tr" not in browser.get(rows_url, params={"after": max(ids)}, timeout=10).text
    drain(config, [conv(shop.id, "lead:new", "lead", "track", "Late Lead", 9)])
    fresh = browser.get(rows_url, params={"after": max(ids)}, timeout=10).text
    assert "Late Lead" in fresh and len(re.findall(r"<tr data-id=", fresh)) == 1
    # Detail of the refunded order: its state and attribution.
    order_id = re.search(r'<tr data-id="(\d+)">(?:(?!</tr>).)*?Order(?:(?!</tr>).)*?refunded',
                         listing, re.S).group(1)  # fmt: skip
    detail = browser.get(f"{live_url}/sites/{shop.id}/conversions/{order_id}", timeout=10).text
    assert "Order o1" in detail and "completed" in detail and "EUR 25.00" in detail
    assert "Direct" in detail and "click1" in detail  # session s1 carried click1
    # The customer: touch, lead, sale, order and its refund, oldest first.
    journey = browser.get(f"{live_url}/sites/{shop.id}/customers/cust-a", timeout=10).text
    steps = re.findall(r'data-step="(\w+)"', journey)
    assert steps[0] == "touch" and {"lead", "sale", "refund"} <= set(steps)
    assert "USD 50.00" in journey and "EUR 75.00" in journey  # confirmed, net of refund
    assert (
        browser.get(f"{live_url}/sites/{shop.id}/customers/nobody", timeout=10).status_code == 404
    )


def test_an_orders_detail_lists_every_reported_state_in_the_shops_order(live_url, shop, config):
    # Completed at 10:00, refunded at 12:00, and then the shop's 11:00 "processing" arrives
    # late: the order stays refunded, and its history lists all three by the shop's times.
    def state(hour: int, status: str, refunded: int):
        version = f"2026-11-20T{hour:02d}:00:00.000000Z|{hour:02d}|{refunded:016d}"
        return conv(
            shop.id, "order:o9", "sale", "order", "Order", 9, 10_000, "EUR",
            orderId="o9", status=status, stateVersion=version, refunded=refunded,
        )  # fmt: skip

    drain(config, [state(10, "completed", 0), state(12, "refunded", 10_000)])
    drain(config, [state(11, "processing", 0), state(12, "refunded", 10_000)])  # late; replay
    browser = log_in(live_url, "viewer@example.com")
    listing = browser.get(
        f"{live_url}/sites/{shop.id}/conversions", params={"source": "order"}, timeout=10
    ).text
    newest = max(int(i) for i in re.findall(r'<tr data-id="(\d+)"', listing))
    detail = browser.get(f"{live_url}/sites/{shop.id}/conversions/{newest}", timeout=10).text
    assert "Order o9" in detail
    history = detail[detail.index('id="order-title"') :]
    history = history[: history.index("</table>")]
    assert re.findall(r"<td><strong>(\w+)</strong>", history) == [
        "completed", "processing", "refunded",
    ]  # fmt: skip
    assert re.findall(r'<tr class="current"><td><time datetime="([^"]+)"', history) == [
        "2026-11-20T12:00:00.000000Z"
    ]
    assert "EUR 100.00" in history  # the refund, on the refunded state's row


def test_bad_report_arguments_are_a_400_naming_the_field(live_url, shop):
    browser = log_in(live_url, "viewer@example.com")
    bad = browser.get(
        f"{live_url}/sites/{shop.id}/overview",
        params={"range": "custom", "start": "2026-02-30", "end": "2026-03-01"}, timeout=10,
    )  # fmt: skip
    assert bad.status_code == 400 and "start" in bad.text
    bad = browser.get(f"{live_url}/sites/{shop.id}/conversions/rows", params={"after": "x"},
                      timeout=10)  # fmt: skip
    assert bad.status_code == 400 and "after" in bad.text


def _fill(engine, site_id: str, n: int) -> None:
    now = store.utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(store.conversions),
            [
                {
                    "site_id": site_id,
                    "dedup_key": f"bulk:{i}",
                    "kind": "lead",
                    "source": "track",
                    "name": "Sign Up " + "x" * 200,
                    "occurred_at": now,
                    "received_at": now,
                }
                for i in range(n)
            ],  # fmt: skip
        )


def _peak(engine, site_id: str) -> tuple[int, int, int]:
    """(chunks, rows, peak bytes allocated) while streaming the whole export."""
    tracemalloc.start()
    chunks = rows = 0
    for chunk in exports.conversions_csv(engine, site_id, {}, None):
        chunks += 1
        rows += chunk.count("\r\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return chunks, rows - 1, peak


def test_the_conversions_export_streams_in_chunks_in_constant_memory(engine):
    small, _ = create_site(engine, "Small", ["https://small.example"])
    big, _ = create_site(engine, "Big", ["https://big.example"])
    _fill(engine, small.id, 2 * exports.CHUNK_ROWS)
    _fill(engine, big.id, 20 * exports.CHUNK_ROWS)
    chunks_small, rows_small, peak_small = _peak(engine, small.id)
    chunks_big, rows_big, peak_big = _peak(engine, big.id)
    assert (rows_small, rows_big) == (2_000, 20_000)
    assert chunks_big == 1 + 20  # the header, then one chunk per fetch of CHUNK_ROWS
    # Ten times the rows, about the same memory: what is held is one chunk, not the export.
    assert peak_big < 2 * peak_small, (peak_small, peak_big)


def test_exported_text_cannot_become_a_spreadsheet_formula(engine):
    # Names come from browsers. A leading = is defused with an apostrophe, and every text
    # cell is quoted so that a spreadsheet splitting on ";" (found by an outside review)
    # cannot start a cell in the middle of one.
    site, _ = create_site(engine, "CSV shop", ["https://csv.example"])
    now = store.utcnow()
    names = ["=1+1", "Purchase;=cmd|' /C calc'!A0;"]
    with engine.begin() as conn:
        conn.execute(
            insert(store.conversions),
            [
                {"site_id": site.id, "dedup_key": f"browser:{i}", "kind": "conversion",
                 "source": "browser", "name": name, "occurred_at": now, "received_at": now}
                for i, name in enumerate(names)
            ],
        )  # fmt: skip
    text = "".join(exports.conversions_csv(engine, site.id, {}, None))
    assert {r["name"] for r in csv.DictReader(io.StringIO(text))} == {"'=1+1", names[1]}
    assert "\"Purchase;=cmd|' /C calc'!A0;\"" in text
