"""The HTTP API against a real Redis, a real RQ worker and a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

from firsttag.config import Config
from firsttag.events.buffer import BUFFER_KEY
from firsttag.sites import create_site
from firsttag.web.app import create_app
from redis import Redis

from tests.support import wait_until

ORIGIN = "https://shop.example"
VISITOR = "v" * 32
SESSION = "a1b2c3d4" * 4


def register(client: Any, site: Any, session_id: str = SESSION, **extra: Any) -> Any:
    body = {"siteKey": site.site_key, "visitorId": VISITOR, "sessionId": session_id, **extra}
    # The tag sends text/plain so the browser makes no preflight.
    return client.post(
        "/api/v1/sessions",
        data=json.dumps(body),
        headers={"Origin": ORIGIN},
        content_type="text/plain;charset=UTF-8",
    )


def convert(client: Any, key: str, body: Any, **headers: str) -> Any:
    return client.post(
        "/api/v1/sessions/convert",
        data=body if isinstance(body, str) else json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )


def secret_get(client: Any, path: str, secret: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {secret}"})


# -- sessions and verification -----------------------------------------------------------


def test_registration_returns_a_signed_key_that_is_stable_for_the_session(client, site):
    first = register(client, site, url="https://shop.example/?dub_id=clk1", clickId="clk1")
    again = register(client, site)
    assert first.status_code == 200
    assert first.headers["Access-Control-Allow-Origin"] == ORIGIN
    key = first.get_json()["sessionKey"]
    assert again.get_json()["sessionKey"] == key
    other = register(client, site, session_id="f" * 32).get_json()["sessionKey"]
    assert other != key


def test_convert_marks_the_session_verified_and_keeps_the_first_time(
    client, site_and_secret, worker
):
    site, secret = site_and_secret
    key = register(client, site, clickId="clk1").get_json()["sessionKey"]
    first = convert(client, site.site_key, {"sessionKey": key})
    assert first.status_code == 200 and first.get_json() == {"success": True}

    stored = wait_until(
        lambda: (
            (r := secret_get(client, f"/api/v1/sessions/{key}", secret)).status_code == 200
            and r.get_json()["verifiedAt"]
            and r.get_json()
        ),
        what="the verified session",
    )
    assert stored["sessionId"] == SESSION and stored["visitorId"] == VISITOR
    assert stored["clickId"] == "clk1"

    assert convert(client, site.site_key, {"sessionKey": key}).status_code == 200
    redis = Redis.from_url(client.application.extensions["firsttag"].config.redis_url)
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0, what="the repeat to be drained")
    after = secret_get(client, f"/api/v1/sessions/{key}", secret).get_json()
    assert after["verifiedAt"] == stored["verifiedAt"]


def test_session_is_unverified_until_converted(client, site_and_secret, worker):
    site, secret = site_and_secret
    key = register(client, site).get_json()["sessionKey"]
    got = wait_until(
        lambda: (
            (r := secret_get(client, f"/api/v1/sessions/{key}", secret)).status_code == 200
            and r.get_json()
        ),
        what="the stored session",
    )
    assert got["verified"] is False and got["verifiedAt"] is None


def test_convert_answers_the_seed_codes(client, site, engine):
    key = register(client, site).get_json()["sessionKey"]
    other_site, _ = create_site(engine, "Other", ["https://other.example"])
    other_key = register(client, other_site).get_json()
    assert other_key.get("sessionKey") is None  # shop.example is not an origin of Other

    missing = convert(client, site.site_key, {})
    assert missing.status_code == 400
    assert missing.get_json()["error"]["fields"][0]["field"] == "sessionKey"

    assert convert(client, "pk_wrong", {"sessionKey": key}).status_code == 401
    no_auth = client.post("/api/v1/sessions/convert", json={"sessionKey": key})
    assert no_auth.status_code == 401
    assert no_auth.get_json()["error"]["code"] == "missing_site_key"

    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    assert convert(client, site.site_key, {"sessionKey": tampered}).status_code == 404
    forged = "WyJzdF8wMDAwMDAwMDAwMDAiLCJ4In0.invalidsignature"
    assert convert(client, site.site_key, {"sessionKey": forged}).status_code == 404
    # An authentic key of another site is "no such session" for this one.
    other_session = client.post(
        "/api/v1/sessions",
        json={"siteKey": other_site.site_key, "visitorId": VISITOR, "sessionId": SESSION},
    ).get_json()["sessionKey"]
    assert convert(client, site.site_key, {"sessionKey": other_session}).status_code == 404
    assert convert(client, site.site_key, {"sessionKey": 12}).status_code == 400


def test_nothing_is_queued_for_rejected_requests(client, site, config):
    redis = Redis.from_url(config.redis_url)
    convert(client, site.site_key, {"sessionKey": "forged.key"})
    convert(client, site.site_key, "{not json")
    register(client, site, visitorId="x")
    assert redis.llen(BUFFER_KEY) == 0


# -- CORS and origins --------------------------------------------------------------------


def test_preflight_allows_only_known_origins(client, site):
    ok = client.options(
        "/api/v1/sessions/convert",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    bad = client.options(
        "/api/v1/sessions/convert",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status_code == 403
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_browser_requests_from_other_origins_are_refused(client, site, config):
    key = register(client, site).get_json()["sessionKey"]
    refused = convert(client, site.site_key, {"sessionKey": key}, Origin="https://evil.example")
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    beacon = client.post(
        "/api/v1/beacon",
        data=json.dumps(
            {"siteKey": site.site_key, "id": "b" * 16, "name": "x", "visitorId": VISITOR}
        ),
        headers={"Origin": "https://evil.example"},
    )
    assert beacon.status_code == 403
    allowed = convert(client, site.site_key, {"sessionKey": key}, Origin=ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    # Only the registration and the allowed verification reached the queue.
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 2


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_gets_a_json_4xx_naming_the_field(client, site):
    malformed = client.post("/api/v1/sessions", data="{oops", content_type="text/plain")
    assert malformed.status_code == 400
    assert malformed.get_json()["error"]["code"] == "malformed_json"

    not_object = client.post("/api/v1/sessions", data="[1,2]", content_type="text/plain")
    assert not_object.status_code == 400

    wrong = register(client, site, visitorId=123, clickId="not a click id!")
    assert wrong.status_code == 400
    fields = {f["field"] for f in wrong.get_json()["error"]["fields"]}
    assert fields == {"visitorId", "clickId"}  # every error at once

    beacon = client.post(
        "/api/v1/beacon",
        data=json.dumps(
            {
                "siteKey": site.site_key,
                "id": "b" * 16,
                "name": "Buy",
                "visitorId": VISITOR,
                "value": "19.99",
                "currency": "ABC",
                "metadata": {"x": "y" * 10_001},
            }
        ),
    )
    assert beacon.status_code == 400
    fields = {f["field"] for f in beacon.get_json()["error"]["fields"]}
    assert fields == {"value", "currency", "metadata"}


def test_oversized_body_is_413_json(client, site):
    big = json.dumps({"siteKey": site.site_key, "pad": "x" * (64 * 1024)})
    response = client.post("/api/v1/sessions", data=big, content_type="text/plain")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "body_too_large"


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/nope").get_json()["error"]["code"] == "not_found"
    response = client.delete("/api/v1/sessions")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_queue_outage_is_503_with_retry_after(tmp_path, site_and_secret, config):
    dead = Config(
        data_dir=tmp_path,
        database_url=config.database_url,
        redis_url="redis://127.0.0.1:1/0",
        secret_key=config.secret_key,
    )
    client = create_app(dead).test_client()
    site, _ = site_and_secret
    response = register(client, site)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "queue_unavailable"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"]["redis"].startswith("error")


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"redis": "ok", "store": "ok"}


# -- secret-key endpoints ----------------------------------------------------------------


def test_secret_endpoints_refuse_publishable_keys_and_browsers(client, site_and_secret):
    site, secret = site_and_secret
    assert client.get("/api/v1/conversions").status_code == 401
    assert secret_get(client, "/api/v1/conversions", "sk_" + "0" * 48).status_code == 401
    assert secret_get(client, "/api/v1/conversions", site.site_key).status_code == 403
    from_page = client.get(
        "/api/v1/conversions", headers={"Authorization": f"Bearer {secret}", "Origin": ORIGIN}
    )
    assert from_page.status_code == 403
    assert "Access-Control-Allow-Origin" not in from_page.headers
    assert secret_get(client, "/api/v1/conversions", secret).status_code == 200
    bad_limit = secret_get(client, "/api/v1/conversions?limit=0", secret)
    assert bad_limit.status_code == 400
    assert bad_limit.get_json()["error"]["fields"][0]["field"] == "limit"


def test_beacon_conversions_are_stored_once_newest_first_and_paginated(
    client, site_and_secret, worker
):
    site, secret = site_and_secret
    key = register(client, site).get_json()["sessionKey"]
    for n in range(5):
        body = {
            "siteKey": site.site_key,
            "id": f"beacon{n:010d}",
            "name": "Purchase",
            "visitorId": VISITOR,
            "sessionKey": key,
            "orderId": f"o{n}",
            "value": 100 * n,
            "currency": "EUR",
            "metadata": {"coupon": "X"},
        }
        for _ in range(2):  # a re-sent beacon
            response = client.post(
                "/api/v1/beacon", data=json.dumps(body), headers={"Origin": ORIGIN}
            )
            assert response.status_code == 202
    # The worker may store the five in more than one transaction: wait for all of them.
    wait_until(
        lambda: (
            len(secret_get(client, "/api/v1/conversions?limit=10", secret).get_json()["data"]) == 5
        ),
        what="five stored conversions",
    )
    page = secret_get(client, "/api/v1/conversions?limit=3", secret).get_json()
    assert [c["orderId"] for c in page["data"]] == ["o4", "o3", "o2"]
    assert page["data"][0]["sessionId"] == SESSION
    assert page["data"][0]["metadata"] == {"coupon": "X"}
    rest = secret_get(
        client, f"/api/v1/conversions?limit=3&cursor={page['nextCursor']}", secret
    ).get_json()
    assert [c["orderId"] for c in rest["data"]] == ["o1", "o0"]
    assert rest["nextCursor"] is None


def test_openapi_is_built_from_the_payload_models(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    props = doc["components"]["schemas"]["SessionConvert"]["properties"]
    assert props["sessionKey"]["maxLength"] == 512
    assert "/api/v1/sessions/convert" in doc["paths"]


def test_openapi_covers_every_api_route(app, client):
    import re

    doc = client.get("/api/v1/openapi.json").get_json()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.endswith("openapi.json"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        path = path.replace("{session_key}", "{sessionKey}")
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (path, method)


def test_sessions_from_automated_browsers_and_bots_are_flagged(client, site_and_secret, worker):
    site, secret = site_and_secret
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
    cases = {
        "a" * 32: ({"webdriver": True}, chrome, True),
        "b" * 32: ({"webdriver": False}, "curl/8.5.0", True),
        "c" * 32: ({"webdriver": False}, chrome, False),
    }
    keys = {}
    for session_id, (extra, ua, _) in cases.items():
        body = {"siteKey": site.site_key, "visitorId": VISITOR, "sessionId": session_id, **extra}
        response = client.post(
            "/api/v1/sessions", data=json.dumps(body), headers={"User-Agent": ua}
        )
        keys[session_id] = response.get_json()["sessionKey"]
    for session_id, (_, _, bot) in cases.items():
        stored = wait_until(
            lambda k=keys[session_id]: (
                (r := secret_get(client, f"/api/v1/sessions/{k}", secret)).status_code == 200
                and r.get_json()
            ),
            what="stored session",
        )
        assert stored["bot"] is bot, session_id


def test_long_page_urls_are_cut_not_refused(client, site):
    long_url = "https://shop.example/?q=" + "x" * 5000
    response = register(client, site, url=long_url)
    assert response.status_code == 200
    beacon = client.post(
        "/api/v1/beacon",
        data=json.dumps(
            {
                "siteKey": site.site_key,
                "id": "l" * 16,
                "name": "Buy",
                "visitorId": VISITOR,
                "url": long_url,
            }
        ),
    )
    assert beacon.status_code == 202


def test_huge_cursors_are_an_empty_page_not_a_crash(client, site_and_secret):
    _, secret = site_and_secret
    for cursor in (2**31, 2**40, 2**62):
        page = secret_get(client, f"/api/v1/conversions?cursor={cursor}", secret)
        assert page.status_code == 200, cursor
        assert page.get_json() == {"data": [], "nextCursor": None}


def test_unknown_origins_and_paths_cannot_make_the_server_rescan_sites(app, site):
    from sqlalchemy import event

    engine = app.extensions["firsttag"].engine
    scans = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM sites" in statement:
            scans.append(statement)

    client = app.test_client()
    assert app.extensions["firsttag"].sites.knows_origin(ORIGIN)  # builds the index once
    event.listen(engine, "before_cursor_execute", count)
    try:
        for n in range(200):
            client.options(
                "/api/v1/sessions",
                headers={
                    "Origin": f"https://x{n}.example",
                    "Access-Control-Request-Method": "POST",
                },
            )
            client.get(f"/random-{n}.js")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(scans) <= 2  # at most one rebuild a second, not one per request
