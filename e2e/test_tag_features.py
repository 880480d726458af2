"""The tag's tougher parts in Chromium: GTM install, consent, names, bots, frames, cookies."""

from __future__ import annotations

import json
import re

import requests

from tests.support import wait_until

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def page_with(head: str, body: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def test_gtm_custom_html_installs_the_tag(browser, firsttag, shop):
    html = requests.get(f"{firsttag.url}/gtm/{firsttag.site['id']}/custom-html", timeout=10).text
    shop.pages["gtm"] = page_with("", html)  # as GTM injects a Custom HTML tag: in the body
    page = browser.new_page()
    page.goto(shop.url + "/p/gtm")
    key = wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
    assert page.evaluate("firsttag.getIdentity().sessionKey") == key
    page.close()


def test_consent_mode_custom_global_and_custom_path(browser, firsttag, shop, tmp_path):
    from e2e.conftest import Serve

    admin = Serve(firsttag.data_dir)
    admin.url = firsttag.url
    site = admin.create_site(
        shop.url,
        "--consent-required",
        "--global-name",
        "shopMetrics",
        "--tag-path",
        "/assets/m-3f9a.js",
    )
    # A new tag path is served within a second (the site index refreshes at most that often).
    wait_until(
        lambda: requests.get(f"{firsttag.url}/assets/m-3f9a.js", timeout=5).ok,
        10,
        "the new tag path",
    )
    shop.pages["consent"] = page_with(f'<script src="{firsttag.url}/assets/m-3f9a.js"></script>')
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(shop.url + "/p/consent?dub_id=clk_consent")
    wait_until(
        lambda: page.evaluate("!!(window.shopMetrics && shopMetrics.getIdentity().sessionKey)"),
        15,
        "the tag under its own name to register",
    )
    assert page.evaluate("typeof window.firsttag") == "undefined"
    ident = page.evaluate("shopMetrics.getIdentity()")
    assert HEX32.match(ident["visitorId"]) and ident["clickId"] == "clk_consent"
    stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]  # nothing written before consent
    page.evaluate("shopMetrics.consent(true)")
    assert page.evaluate("localStorage.getItem('ft_vid')") == ident["visitorId"]
    assert page.evaluate("sessionStorage.getItem('cl_sk')") == ident["sessionKey"]
    assert "dub_id=clk_consent" in page.evaluate("document.cookie")
    assert site["settings"]["consentRequired"] is True and errors == []
    context.close()


def test_automated_browsers_are_flagged_and_people_are_not(browser, firsttag, shop):
    def session_of(context) -> dict:
        page = context.new_page()
        page.goto(shop.url + "/")
        key = wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
        return wait_until(
            lambda: (r := firsttag.api(f"/api/v1/sessions/{key}")).ok and r.json(),
            20,
            "the stored session",
        )

    robot = browser.new_context()  # Playwright sets navigator.webdriver
    assert session_of(robot)["bot"] is True
    person = browser.new_context(
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
    )
    person.add_init_script("Object.defineProperty(navigator, 'webdriver', {get: () => false})")
    assert session_of(person)["bot"] is False
    robot.close()
    person.close()


def test_sandboxed_iframe_without_storage_or_cookies(browser, firsttag, shop):
    shop.pages["inner"] = page_with(firsttag.site["tag"].replace(" async", ""))
    shop.pages["outer"] = page_with("", '<iframe sandbox="allow-scripts" src="/p/inner"></iframe>')
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(shop.url + "/p/outer")
    frame = wait_until(
        lambda: pumped(page) and len(page.frames) > 1 and page.frames[1], 10, "the iframe"
    )
    ident = wait_until(
        lambda: frame.evaluate("window.firsttag && firsttag.getIdentity()"),
        10,
        "the tag in the sandboxed frame",
    )
    assert HEX32.match(ident["visitorId"]) and HEX32.match(ident["sessionId"])
    assert frame.evaluate("typeof firsttag.convert('Framed', {value: 1})") == "string"
    assert errors == []
    page.close()


def test_dub_id_cookie_is_shared_by_www_and_apex(browser, firsttag, shop):
    port = shop.url.rsplit(":", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://www.shop.test:{port}/?dub_id=clk_www")
    wait_until(lambda: "dub_id=clk_www" in page.evaluate("document.cookie"), 10, "the cookie")
    (cookie,) = [c for c in context.cookies() if c["name"] == "dub_id"]
    assert cookie["domain"] in (".shop.test", "shop.test")  # not host-only, not ".test"
    assert not [c for c in context.cookies() if c["name"] == "_ftp"]  # the probe is removed
    page.goto(f"http://shop.test:{port}/")
    assert page.evaluate("firsttag.getIdentity().clickId") == "clk_www"
    bad = context.new_page()
    bad.goto(f"http://shop.test:{port}/?dub_id=<script>")
    assert bad.evaluate("firsttag.getIdentity().clickId") == "clk_www"  # invalid one ignored
    context.close()


def stored_with_order(firsttag, order_id: str) -> list[dict]:
    return [
        c
        for c in firsttag.api("/api/v1/conversions?limit=500").json()["data"]
        if c["orderId"] == order_id
    ]


def test_a_failed_conversion_is_resent_on_the_next_page_and_counted_once(browser, firsttag, shop):
    context = browser.new_context()
    page = context.new_page()
    page.goto(shop.url + "/")
    wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
    page.route("**/api/v1/beacon", lambda route: route.fulfill(status=503, body="down"))
    with page.expect_response("**/api/v1/beacon") as failed:
        page.evaluate("firsttag.convert('Retry', {orderId: 'retry_1', value: 700})")
    assert failed.value.status == 503
    assert "retry_1" in page.evaluate("localStorage.getItem('ft_q')")  # kept for later
    page.unroute("**/api/v1/beacon")
    with page.expect_response("**/api/v1/beacon") as resent:
        page.goto(shop.url + "/checkout")  # the next page view re-sends it
    assert resent.value.status == 202
    wait_until(
        lambda: "retry_1" not in (page.evaluate("localStorage.getItem('ft_q')") or ""),
        10,
        "the queue to forget it",
    )
    page.goto(shop.url + "/")  # nothing left to send again
    wait_until(lambda: stored_with_order(firsttag, "retry_1"), 20, "the re-sent conversion")
    assert len(stored_with_order(firsttag, "retry_1")) == 1
    context.close()


def test_without_fetch_the_tag_still_gives_ids_and_never_throws(browser, firsttag, shop):
    # Every browser since 2017 has fetch; the sendBeacon fallback cost bytes the stub and
    # page() needed. A browser without it keeps working identities, sends nothing, throws nothing.
    context = browser.new_context()
    context.add_init_script("delete window.fetch")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(shop.url + "/")
    assert HEX32.match(page.evaluate("firsttag.getIdentity().visitorId"))
    page.evaluate("firsttag.convert('NoFetch', {orderId: 'nofetch_1'})")  # no throw
    assert errors == []
    context.close()


def test_calls_before_the_async_tag_has_loaded_are_queued_and_replayed(browser, firsttag, shop):
    site = firsttag.site
    shop.pages["stub"] = page_with(
        site["tag"],  # the stub and the async script, as printed
        "<script>window.early = firsttag.convert('Early', {orderId: 'stub_1', value: 100});"
        "firsttag.convert('Second', {orderId: 'stub_2'});</script>",
    )
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    held = []
    page.route(
        f"**/t/{site['id']}.js", lambda route: held.append(route)
    )  # a slow tag: held until released
    sent: list[str] = []
    page.on(
        "request",
        lambda r: r.url.endswith("/api/v1/beacon") and sent.append(json.loads(r.post_data)["name"]),
    )
    page.goto(shop.url + "/p/stub", wait_until="domcontentloaded")
    wait_until(lambda: pumped(page) and held, 10, "the tag request")
    # The inline calls ran before the tag: no ReferenceError, queued, nothing sent yet.
    assert errors == [] and sent == []
    assert page.evaluate("[window.early, firsttag.q.length, typeof firsttag.getIdentity]") == [
        None,
        2,
        "undefined",
    ]
    held[0].continue_()
    wait_until(lambda: pumped(page) and len(sent) == 2, 15, "the queued conversions")
    assert sent == ["Early", "Second"]  # replayed in order
    assert page.evaluate("typeof firsttag.convert('Late', {})") == "string"  # loaded: the ID
    wait_until(lambda: stored_with_order(firsttag, "stub_2"), 20, "the queued conversion stored")
    assert len(stored_with_order(firsttag, "stub_1")) == 1
    assert errors == []
    page.close()


def pumped(page) -> bool:
    """Let Playwright deliver the page's events (it does so only inside its own calls)."""
    return page.evaluate("true")


def registrations(page) -> list[dict]:
    """The session registrations the page sends, in order."""
    sent: list[dict] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and r.url.endswith("/api/v1/sessions")
            and sent.append(json.loads(r.post_data))
        ),
    )
    return sent


def new_session_key(page, old: str | None) -> str:
    """The session key the page holds once it differs from ``old``."""
    return wait_until(
        lambda: page.evaluate(
            f"(k => k != {json.dumps(old)} && k)(firsttag.getIdentity().sessionKey)"
        ),
        15,
        "a new session key",
    )


def test_page_counts_a_route_change_only_with_campaign_parameters(browser, firsttag, shop):
    page = browser.new_page()
    sent = registrations(page)
    page.goto(shop.url + "/")
    first_key = new_session_key(page, None)
    first = page.evaluate("firsttag.getIdentity()")
    page.evaluate("history.pushState({}, '', '/cart'); firsttag.page()")
    page.evaluate("history.pushState({}, '', '/sale?gclid=abc_1'); firsttag.page()")
    wait_until(lambda: pumped(page) and len(sent) == 2, 15, "the route change with a click ID")
    touch = sent[1]  # the /cart route change sent nothing
    assert touch["url"] == shop.url + "/sale?gclid=abc_1"
    assert touch["referrer"] == shop.url + "/cart"  # the route before, not document.referrer
    assert touch["visitorId"] == first["visitorId"] and touch["sessionId"] != first["sessionId"]
    key = new_session_key(page, first_key)
    assert page.evaluate("firsttag.getIdentity().sessionId") == touch["sessionId"]
    stored = wait_until(
        lambda: (r := firsttag.api(f"/api/v1/sessions/{key}")).ok and r.json(), 20, "the touch"
    )
    assert (stored["visitorId"], stored["url"]) == (first["visitorId"], touch["url"])
    page.evaluate("firsttag.page()")  # the same URL again: nothing
    page.evaluate("history.pushState({}, '', '/x?utm_source=a'); firsttag.page()")
    wait_until(lambda: pumped(page) and len(sent) == 3, 15, "the route change with UTM tags")
    assert sent[2]["url"] == shop.url + "/x?utm_source=a"
    page.close()


def test_track_history_hooks_push_state_and_popstate(browser, firsttag, shop):
    from e2e.conftest import Serve

    admin = Serve(firsttag.data_dir)
    admin.url = firsttag.url
    spa = admin.create_site(shop.url, "--track-history", "--global-name", "spaTag")
    assert spa["settings"]["trackHistory"] is True
    shop.pages["spa"] = page_with(spa["tag"])
    page = browser.new_page()
    sent = registrations(page)
    page.goto(shop.url + "/p/spa")
    wait_until(lambda: pumped(page) and len(sent) == 1, 15, "the landing registration")
    page.evaluate("history.pushState({}, '', '/p/spa/cart')")
    page.evaluate("history.pushState({n: 1}, '', '/p/spa?utm_source=newsletter&utm_medium=email')")
    wait_until(lambda: pumped(page) and len(sent) == 2, 15, "pushState onto a campaign URL")
    page.evaluate("history.pushState({}, '', '/p/spa/checkout')")
    page.go_back()  # popstate onto the campaign URL
    wait_until(lambda: pumped(page) and len(sent) == 3, 15, "popstate onto a campaign URL")
    assert [r["url"].split("/p/spa")[1] for r in sent[1:]] == [
        "?utm_source=newsletter&utm_medium=email"
    ] * 2
    assert sent[2]["referrer"] == shop.url + "/p/spa/checkout"
    assert page.evaluate("history.state") == {"n": 1}  # pushState itself still works
    page.close()


def test_serve_points_tags_at_its_own_address_whatever_the_host(firsttag):
    # `firsttag serve --port N` without --public-url: tags talk to http://127.0.0.1:N.
    tag_url = f"{firsttag.url}/t/{firsttag.site['id']}.js"
    expected = requests.get(tag_url, timeout=10)
    assert f'"{firsttag.url}/api/v1"' in expected.text
    for headers in ({"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"}):
        response = requests.get(tag_url, headers=headers, timeout=10)
        assert response.content == expected.content
        assert response.headers["ETag"] == expected.headers["ETag"]


def test_markup_named_like_the_global_does_not_break_the_stub_or_the_tag(browser, firsttag, shop):
    # Found by an outside review: comment fields often allow <a id=… name=…>; such markup
    # made window.firsttag an element collection, the stub threw into the page and the tag
    # stopped without registering.
    site = firsttag.site
    shop.pages["clobbered"] = page_with(
        '<a id="firsttag"></a><a id="firsttag" name="q"></a>' + site["tag"],
        "<script>firsttag.convert('Clobbered', {orderId: 'clobber_1'});</script>",
    )
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(shop.url + "/p/clobbered")
    wait_until(lambda: stored_with_order(firsttag, "clobber_1"), 20, "the conversion stored")
    assert HEX32.match(page.evaluate("firsttag.getIdentity().visitorId"))
    assert errors == []
    page.close()
