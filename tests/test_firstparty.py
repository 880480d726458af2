"""First-party mode: the IDs kept in the site's own HttpOnly cookie, and who may use it."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from typing import Any

import pytest
from firsttag import store
from firsttag.sites import Settings, create_site
from firsttag.web.firstparty import COOKIE_MAX_AGE

from tests.support import wait_until

ORIGIN = "https://shop.example"
SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def client(app: Any) -> Any:
    # Cookies are sent by hand: each test says exactly which cookie a request carries.
    return app.test_client(use_cookies=False)


@pytest.fixture
def site(engine: Any) -> Any:
    """A site in first-party mode on https://shop.example (and a dev origin)."""
    return create_site(
        engine,
        "Shop",
        [ORIGIN, "http://localhost:3000", "http://shop.example"],
        Settings(first_party_path="/ft"),
    )[0]


def register(
    client: Any,
    site: Any,
    visitor: str,
    session: str,
    click: str | None = None,
    cookie: str | None = None,
    **headers: str,
) -> Any:
    body = {"siteKey": site.site_key, "visitorId": visitor, "sessionId": session}
    if click:
        body["clickId"] = click
    headers = {**SAME_ORIGIN, **headers}
    if cookie:
        headers["Cookie"] = cookie
    return client.post(
        "/api/v1/sessions",
        data=json.dumps(body),
        headers={k: v for k, v in headers.items() if v},
        content_type="text/plain;charset=UTF-8",
    )


def set_cookie(response: Any) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        jar.load(header)
    return jar


def test_the_cookie_brings_the_visitor_back_after_the_tag_storage_was_wiped(
    client, site, config, worker
):
    first = register(client, site, "a" * 32, "s" * 32, click="clk_fp")
    assert first.status_code == 200
    assert (first.json["visitorId"], first.json["clickId"]) == ("a" * 32, "clk_fp")
    name = f"__Host-ft_{site.id}"
    morsel = set_cookie(first)[name]
    assert morsel["httponly"] and morsel["secure"]
    assert morsel["samesite"] == "Lax" and morsel["path"] == "/" and not morsel["domain"]
    assert int(morsel["max-age"]) == COOKIE_MAX_AGE == 400 * 86400

    # Safari wiped localStorage, sessionStorage and the dub_id cookie: the tag comes back
    # with a new visitor ID and no click; the server's cookie is still there.
    again = register(client, site, "b" * 32, "t" * 32, cookie=f"{name}={morsel.value}")
    assert (again.json["visitorId"], again.json["clickId"]) == ("a" * 32, "clk_fp")
    assert set_cookie(again)[name]["max-age"] == str(COOKIE_MAX_AGE)  # refreshed each visit
    engine = store.connect(config.database_url)
    stored = wait_until(
        lambda: store.get_session(engine, site.id, "t" * 32), 20, "the second session"
    )
    assert (stored["visitorId"], stored["clickId"]) == ("a" * 32, "clk_fp")

    # A new click wins over the remembered one; the visitor stays.
    clicked = register(client, site, "b" * 32, "u" * 32, "clk_new", f"{name}={morsel.value}")
    assert (clicked.json["visitorId"], clicked.json["clickId"]) == ("a" * 32, "clk_new")


def test_a_cookie_of_another_site_or_a_forged_one_is_ignored(client, site, engine):
    other = create_site(engine, "Other", [ORIGIN], Settings(first_party_path="/ft"))[0]
    from_other = register(client, other, "e" * 32, "s" * 32, click="clk_evil")
    stolen = set_cookie(from_other)[f"__Host-ft_{other.id}"].value
    name = f"__Host-ft_{site.id}"
    mine = set_cookie(register(client, site, "a" * 32, "s" * 32))[name].value
    payload, _, signature = mine.rpartition(".")
    for cookie in (
        f"{name}={stolen}",  # validly signed, but for the other site
        f"{name}={payload}.{'A' * len(signature)}",  # forged signature
        f"{name}=garbage",
    ):
        answer = register(client, site, "b" * 32, "t" * 32, cookie=cookie).json
        assert (answer["visitorId"], answer["clickId"]) == ("b" * 32, None), cookie


def test_only_a_same_origin_request_from_a_site_origin_reads_or_sets_it(client, site, engine):
    name = f"__Host-ft_{site.id}"
    valid = set_cookie(register(client, site, "a" * 32, "s" * 32))[name].value
    jar = f"{name}={valid}"

    # A page of another site, or one the browser marks cross-site: nothing read, nothing set.
    hostile = register(client, site, "b" * 32, "t" * 32, cookie=jar, Origin="https://evil.example")
    assert hostile.status_code == 403 and not hostile.headers.getlist("Set-Cookie")
    for fetch_site in ("cross-site", "same-site"):
        answer = register(
            client, site, "b" * 32, "t" * 32, cookie=jar, **{"Sec-Fetch-Site": fetch_site}
        )
        assert answer.json["visitorId"] == "b" * 32
        assert not answer.headers.getlist("Set-Cookie"), fetch_site
    # Not a browser (no Origin): neither.
    bare = register(client, site, "b" * 32, "t" * 32, cookie=jar, Origin="")
    assert bare.json["visitorId"] == "b" * 32 and not bare.headers.getlist("Set-Cookie")
    # Plain http on the open network: no cookie at all.
    http = register(client, site, "b" * 32, "t" * 32, Origin="http://shop.example")
    assert http.status_code == 200 and not http.headers.getlist("Set-Cookie")
    # Plain http on loopback (development): a cookie without Secure, so browsers keep it.
    dev = set_cookie(register(client, site, "b" * 32, "t" * 32, Origin="http://localhost:3000"))
    morsel = dev[f"ft_{site.id}"]
    assert morsel["httponly"] and not morsel["secure"] and morsel["samesite"] == "Lax"
    assert f"__Host-ft_{site.id}" not in dev


@pytest.mark.parametrize(
    "settings", [Settings(), Settings(first_party_path="/ft", consent_required=True)]
)
def test_no_cookie_outside_first_party_mode_or_before_consent(client, engine, settings):
    plain = create_site(engine, "Plain", [ORIGIN], settings)[0]
    answer = register(client, plain, "a" * 32, "s" * 32, click="clk_1")
    assert answer.status_code == 200 and not answer.headers.getlist("Set-Cookie")
    # The tag adopts the answer's IDs, which are then its own.
    assert (answer.json["visitorId"], answer.json["clickId"]) == ("a" * 32, "clk_1")
