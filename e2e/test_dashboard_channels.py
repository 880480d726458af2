"""The overview's channel tables in Chromium, with shoppers who came from somewhere.

Real shoppers in Chromium land on the demo shop from a newsletter and from a Google Ads
click and buy (its order webhook); one more arrives from a Dub link and becomes a
customer through Dub's track API. The dashboard's channel table must equal the
breakdown API's (another code path: the rows, not the rollups); a row click narrows every
panel and is in the URL; a range change and the back button; axe-core finds no serious
violation; screenshots of the overview and of the customer's journey for docs/.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from e2e.conftest import Firsttag
from e2e.test_channels import GOOGLE_AD, NEWSLETTER, buy
from e2e.test_dashboard_core import PASSWORD, cli, serious
from e2e.test_dashboard_reports import SHOTS, tile
from tests.support import wait_until

VIEWER = "viewer@channels.test"
# Headless Chromium says "HeadlessChrome" and sets navigator.webdriver, which firsttag
# rightly counts as a bot: the shoppers here look like a desktop's and a phone's browser,
# as real visitors would (bot exclusion has tests of its own).
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


class As:
    """``browser`` whose new contexts send ``user_agent`` (for helpers that make their own)."""

    def __init__(self, browser: Any, user_agent: str) -> None:
        self.browser, self.user_agent = browser, user_agent

    def new_context(self, **options: Any) -> Any:
        """A context of the real browser with this user agent, not flagged as automated."""
        context = self.browser.new_context(user_agent=self.user_agent, **options)
        context.add_init_script(
            "Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false})"
        )
        return context


def api_rows(firsttag: Firsttag, group: str, **filters: str) -> dict[str, tuple[int, int, int]]:
    """The breakdown API's rows (30 days, bots left out): value → (sessions, leads, sales)."""
    params = [("groupBy", group), ("excludeBots", "1"), ("limit", "500")]
    params += [("filter", f"{k}:{v}") for k, v in filters.items()]
    query = "&".join(f"{k}={requests.utils.quote(v)}" for k, v in params)
    body = firsttag.api(f"/api/v1/analytics/breakdown?{query}").json()
    return {
        (r["group"] or "(none)"): (r["sessions"], r["leads"], r["sales"])
        for r in body["data"]
        if r["sessions"] or r["leads"] or r["sales"]
    }


def page_rows(page: Any, dimension: str) -> dict[str, tuple[int, int, int]]:
    """The overview's table of ``dimension``: value → (sessions, leads, sales)."""
    out = {}
    for row in page.locator(f'table[data-dimension="{dimension}"] tbody tr').all():
        value = row.locator("th a").get_attribute("data-value")
        cells = tuple(int(c.replace(",", "")) for c in row.locator("td").all_inner_texts()[:3])
        # As api_rows: a value seen only in what these columns leave out (a bot's visit,
        # whose session other e2e tests of the session-wide server make) is no row here.
        if any(cells):
            out[value] = cells
    return out


def customer_arrives_and_buys(browser: Any, shop: Any, firsttag: Firsttag) -> None:
    """A visitor from a Dub link (dub_id), then Dub's track.lead and track.sale for them."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(shop.url + "/?dub_id=ada_link_1", referer="https://dub.sh/")
    wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
    context.close()
    headers = {"Authorization": f"Bearer {firsttag.site['secretKey']}"}
    for path, body in (
        ("/api/v1/track/lead", {"clickId": "ada_link_1", "eventName": "Sign up",
                                "customerExternalId": "cus-ada",
                                "customerName": "Ada Lovelace",
                                "customerEmail": "ada@example.com"}),
        ("/api/v1/track/sale", {"customerExternalId": "cus-ada", "amount": 4900,
                                "currency": "eur", "invoiceId": "inv-ada-1",
                                "eventName": "Mug subscription"}),
    ):  # fmt: skip
        answer = requests.post(firsttag.url + path, json=body, headers=headers, timeout=10)
        assert answer.status_code in (200, 202), answer.text


def test_channel_tables_filters_back_button_and_customer_journey(browser, firsttag, shop):
    site = firsttag.site
    cli(firsttag, "users", "create", "--email", VIEWER, "--site", site["id"],
        "--role", "viewer", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    buy(As(browser, PHONE), shop, firsttag, NEWSLETTER, None)
    buy(As(browser, DESKTOP), shop, firsttag, GOOGLE_AD, "https://www.google.com/")
    customer_arrives_and_buys(As(browser, DESKTOP), shop, firsttag)
    base = f"{firsttag.url}/sites/{site['id']}"
    wait_until(
        lambda: api_rows(firsttag, "channel").get("affiliate", (0, 0, 0))[2] >= 1,
        30,
        "the customer's sale, credited to the Dub link",
    )

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{base}/overview")
    page.get_by_label("Email").fill(VIEWER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/overview")

    # The whole channel table equals the API's, which counts from the rows.
    want = api_rows(firsttag, "channel")
    assert {"email", "paid search", "affiliate"} <= set(want)
    assert page_rows(page, "channel") == want
    assert page_rows(page, "visit_source") == api_rows(firsttag, "source")
    assert "last non-direct" in page.locator("#model-note").inner_text()
    assert page_rows(page, "device") == api_rows(firsttag, "device")
    assert {"desktop", "mobile"} <= set(page_rows(page, "device"))
    assert serious(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # A channel row narrows every panel, and is in the URL.
    overview_url = page.url
    page.locator('table[data-dimension="channel"]').get_by_role(
        "link", name="email", exact=True
    ).click()
    page.wait_for_url(re.compile(r".*channel=email.*"))
    email = api_rows(firsttag, "channel")["email"]
    assert tile(page, "sales") == str(email[2])
    assert f"of {email[0]} sessions" in page.locator('[data-tile="click-sessions"]').inner_text()
    assert page_rows(page, "visit_source") == api_rows(firsttag, "source", channel="email")
    assert list(page_rows(page, "channel")) == ["email"]
    assert serious(page) == []
    page.go_back()
    page.wait_for_url(overview_url)
    assert page_rows(page, "channel") == want

    # A range change is a new URL; the back button returns to the range before.
    thirty = page.locator("#period-label").inner_text()
    page.get_by_label("Range", exact=True).select_option("7d")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*range=7d.*"))
    seven = page.locator("#period-label").inner_text()
    assert seven != thirty
    page.go_back()
    page.wait_for_url(overview_url)
    assert page.locator("#period-label").inner_text() == thirty
    page.go_forward()
    page.wait_for_url(re.compile(r".*range=7d.*"))
    assert page.locator("#period-label").inner_text() == seven

    # The customer's journey: the visit from the Dub link, the lead, the sale.
    page.goto(f"{base}/customers/cus-ada")
    assert page.get_by_role("heading", name=re.compile("Ada Lovelace")).count() >= 1
    journey = page.locator("main").inner_text()
    assert "affiliate" in journey and "Sign up" in journey and "EUR 49.00" in journey
    assert serious(page) == []
    page.screenshot(path=str(SHOTS / "customer.png"), full_page=True)
    assert blocked == []
    context.close()
