"""A visitor's whole journey in Chromium, read back through the API."""

from __future__ import annotations

import re

from tests.support import wait_until

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def identity(page):
    return page.evaluate("window.firsttag && firsttag.getIdentity()")


def wait_for_session_key(page) -> str:
    return wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")


def test_landing_checkout_thank_you_is_verified_and_converted(browser, firsttag, shop):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(shop.url + "/?dub_id=clk_abc123")
    session_key = wait_for_session_key(page)
    ident = identity(page)
    assert HEX32.match(ident["visitorId"]) and HEX32.match(ident["sessionId"])
    assert ident["sessionKey"] == session_key and ident["clickId"] == "clk_abc123"
    cookie = next(c for c in context.cookies() if c["name"] == "dub_id")
    assert cookie["value"] == "clk_abc123" and cookie["path"] == "/"
    assert cookie["sameSite"] == "Lax"
    assert cookie["expires"] > 0  # persistent (90 days), not a session cookie

    page.click("#buy")
    page.wait_for_url("**/checkout")
    for name in ("visitorId", "sessionId", "sessionKey", "clickId"):
        wait_until(
            lambda n=name: page.input_value(f"#checkout input[name={n}]") == ident[n], 10, name
        )
    page.click("#later")  # a form added after the tag ran
    wait_until(lambda: page.input_value("#late input") == ident["visitorId"], 10, "late form")

    with page.expect_response("**/api/v1/sessions/convert") as verified:
        page.click("#pay")
    assert verified.value.status == 200
    page.wait_for_url("**/thank-you")
    order = shop.orders[-1]
    assert {k: order[k] for k in ("visitorId", "sessionId", "sessionKey", "clickId")} == ident

    session = wait_until(
        lambda: (
            (r := firsttag.api(f"/api/v1/sessions/{session_key}")).ok
            and r.json()["verifiedAt"]
            and r.json()
        ),
        20,
        "the session to be verified",
    )
    assert session["visitorId"] == ident["visitorId"]
    assert session["clickId"] == "clk_abc123"
    assert session["url"] == shop.url + "/?dub_id=clk_abc123"

    conversions = wait_until(
        lambda: [
            c
            for c in firsttag.api("/api/v1/conversions").json()["data"]
            if c["source"] == "browser"
            and c["orderId"] == "ord_1"
            and c["visitorId"] == ident["visitorId"]
        ],
        20,
        "the conversion",
    )
    assert len(conversions) == 1
    c = conversions[0]
    assert (c["name"], c["value"], c["currency"]) == ("Purchase", 4900, "EUR")
    assert c["sessionId"] == ident["sessionId"] and c["clickId"] == "clk_abc123"
    assert c["metadata"] == {"coupon": "WELCOME"}

    # The shop's back end posted the order webhook with the IDs from the hidden fields.
    assert shop.webhook_answers[-1]["success"] is True
    order_id = shop.webhook_answers[-1]["id"].removeprefix("order:")
    order = wait_until(
        lambda: [
            o
            for o in firsttag.api("/api/v1/conversions").json()["data"]
            if o["orderId"] == order_id and o["source"] == "order"
        ],
        20,
        "the order from the shop's back end",
    )[0]
    assert (order["visitorId"], order["sessionId"]) == (ident["visitorId"], ident["sessionId"])
    assert (order["kind"], order["value"], order["status"]) == ("sale", 4900, "completed")
    attribution = order["attribution"]
    assert attribution["type"] == "direct"  # this session arrived with the dub_id click
    assert attribution["lastTouch"] == attribution["firstTouch"]
    assert attribution["lastTouch"]["clickId"] == "clk_abc123"
    assert attribution["lastTouch"]["sessionId"] == ident["sessionId"]
    assert attribution["timeToConversionSeconds"] >= 0
    assert errors == []
    context.close()


def test_reload_keeps_the_session_and_a_new_tab_starts_one(browser, shop):
    context = browser.new_context()
    page = context.new_page()
    page.goto(shop.url + "/")
    key = wait_for_session_key(page)
    first = identity(page)
    page.reload()
    wait_until(lambda: identity(page), 10, "the tag after reload")
    assert identity(page) == first
    assert page.evaluate("sessionStorage.getItem('cl_sk')") == key

    tab = context.new_page()
    tab.goto(shop.url + "/")
    wait_for_session_key(tab)
    other = identity(tab)
    assert other["visitorId"] == first["visitorId"]
    assert other["sessionId"] != first["sessionId"]
    assert other["sessionKey"] != key
    context.close()


def test_blocked_storage_and_cookies_never_break_the_page(browser, shop):
    context = browser.new_context()
    context.add_init_script("""
      for (const name of ['localStorage', 'sessionStorage']) {
        Object.defineProperty(window, name, {
          get() { throw new DOMException('blocked', 'SecurityError'); },
        });
      }
      Object.defineProperty(Document.prototype, 'cookie', {
        get() { throw new DOMException('blocked', 'SecurityError'); },
        set() { throw new DOMException('blocked', 'SecurityError'); },
      });
    """)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with page.expect_response("**/api/v1/sessions") as registered:
        page.goto(shop.url + "/?dub_id=clk_blocked")
    assert registered.value.ok
    ident = wait_until(lambda: (i := identity(page)) and i["sessionKey"] and i, 10, "identity")
    assert HEX32.match(ident["visitorId"]) and HEX32.match(ident["sessionId"])
    assert ident["clickId"] == "clk_blocked"
    assert page.evaluate("typeof firsttag.convert('Blocked', {value: 1})") == "string"
    assert errors == []
    context.close()


def test_tag_loaded_twice_registers_once(browser, shop):
    context = browser.new_context()
    page = context.new_page()
    registrations: list[str] = []

    def on_request(r) -> None:
        if r.method == "POST" and r.url.endswith("/api/v1/sessions"):
            registrations.append(r.url)

    page.on("request", on_request)
    page.goto(shop.url + "/twice")
    wait_for_session_key(page)
    page.wait_for_load_state("networkidle")
    assert len(registrations) == 1
    context.close()


def test_a_conversion_survives_the_page_navigating_away_at_once(browser, firsttag, shop):
    context = browser.new_context()
    page = context.new_page()
    page.goto(shop.url + "/")
    wait_for_session_key(page)
    ident = identity(page)
    page.goto(shop.url + "/convert-and-leave?order=leave_1")
    page.wait_for_url("**/done")
    stored = wait_until(
        lambda: [
            c
            for c in firsttag.api("/api/v1/conversions").json()["data"]
            if c["orderId"] == "leave_1"
        ],
        20,
        "the conversion sent while leaving",
    )
    assert len(stored) == 1 and stored[0]["visitorId"] == ident["visitorId"]
    context.close()
