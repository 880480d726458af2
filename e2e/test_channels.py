"""Two shoppers in Chromium, from a newsletter and from a Google Ads click, each buying
through the shop's order webhook: attributed to their channel, counted in its report row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import wait_until

NEWSLETTER = "/?utm_source=newsletter&utm_medium=email&utm_campaign=bf"
GOOGLE_AD = "/?gclid=EAIaIQobChMIe2e"


def row(firsttag, channel: str) -> dict[str, Any]:
    """The channel's row of the breakdown (zeros when it has none yet)."""
    body = firsttag.api("/api/v1/analytics/breakdown?groupBy=channel&limit=500").json()
    found = [r for r in body["data"] if r["group"] == channel]
    return found[0] if found else {"sessions": 0, "sales": 0, "revenue": {}}


def buy(browser, shop, firsttag, path: str, referer: str | None) -> dict[str, Any]:
    """Land on ``path`` (from ``referer``), buy at checkout; the stored order, attributed."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if referer:
        page.goto(shop.url + path, referer=referer)
    else:
        page.goto(shop.url + path)
    wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
    ident = page.evaluate("firsttag.getIdentity()")
    page.click("#buy")
    page.wait_for_url("**/checkout")
    wait_until(
        lambda: page.input_value("#checkout input[name=sessionId]") == ident["sessionId"],
        10,
        "the hidden fields",
    )
    page.click("#pay")
    page.wait_for_url("**/thank-you")
    answer = shop.webhook_answers[-1]
    assert answer["success"] is True
    order_id = answer["id"].removeprefix("order:")
    order = wait_until(
        lambda: [
            o
            for o in firsttag.api("/api/v1/conversions?limit=500").json()["data"]
            if o["orderId"] == order_id and o["source"] == "order"
        ],
        20,
        "the order",
    )[0]
    assert order["sessionId"] == ident["sessionId"]
    assert errors == []
    context.close()
    return order


@pytest.mark.parametrize(
    ("path", "referer", "channel", "source", "medium", "campaign", "click"),
    [
        (NEWSLETTER, None, "email", "newsletter", "email", "bf", None),
        (GOOGLE_AD, "https://www.google.com/", "paid search", "google", "cpc", None, "gclid"),
    ],
)
def test_a_checkout_is_attributed_to_its_channel_and_reported_in_its_row(
    browser, firsttag, shop, path, referer, channel, source, medium, campaign, click
):
    before = row(firsttag, channel)
    order = buy(browser, shop, firsttag, path, referer)
    attribution = order["attribution"]
    assert attribution["type"] == "direct"  # the buying visit carried the touch
    for model in ("firstTouch", "lastTouch", "lastNonDirect"):
        touch = attribution["models"][model]
        assert (touch["channel"], touch["source"], touch["medium"], touch["campaign"]) == (
            channel,
            source,
            medium,
            campaign,
        ), model
        assert touch["clickIdType"] == click
        assert touch["sessionId"] == order["sessionId"]
    if click:
        assert attribution["models"]["lastNonDirect"]["clickIdValue"] == "EAIaIQobChMIe2e"

    after = wait_until(
        lambda: (r := row(firsttag, channel))["sales"] == before["sales"] + 1 and r,
        20,
        "the report row",
    )
    assert after["sessions"] == before["sessions"] + 1
    assert after["revenue"].get("EUR", 0) == before["revenue"].get("EUR", 0) + 4900
    assert after["conversionRate"] == round(after["sales"] / after["sessions"], 4)
