"""Rate limits, bounded waits, CORS per site and Referrer-Policy, against a real Redis."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import requests
from firsttag.config import Config
from firsttag.events.buffer import BUFFER_KEY
from firsttag.sites import create_site, update_settings
from firsttag.tag.install import install_link
from firsttag.web.app import create_app
from redis import Redis

from tests.support import wait_until

SHOP_A = "https://shop-a.example"
SHOP_B = "https://shop-b.example"


def beacon(client: Any, site: Any, ip: str, n: int, origin: str, **headers: str) -> Any:
    body = {
        "siteKey": site.site_key,
        "id": f"b{ip.replace('.', '')}x{n:06d}".ljust(16, "0"),
        "name": "signup",
        "visitorId": "v" * 32,
    }
    return client.post(
        "/api/v1/beacon",
        data=json.dumps(body),
        headers={"Origin": origin, **headers},
        content_type="text/plain;charset=UTF-8",
        environ_base={"REMOTE_ADDR": ip},
    )


def two_sites(engine: Any) -> tuple[Any, str, Any, str]:
    a, a_secret = create_site(engine, "A", [SHOP_A])
    b, b_secret = create_site(engine, "B", [SHOP_B])
    return a, a_secret, b, b_secret


def test_a_flood_from_one_ip_is_refused_while_others_are_untouched(app, engine, config):
    """The defaults: one client sending 400 beacons at once is cut off after its burst."""
    a, _, b, _ = two_sites(engine)
    other_process = create_app(config).test_client()  # a second web process, same Redis
    client = app.test_client()
    answers = [
        beacon(client if n % 2 else other_process, a, "203.0.113.5", n, SHOP_A) for n in range(400)
    ]
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code == 429]
    assert len(accepted) + len(refused) == 400
    # The burst is the limit, across both processes; then one more every 60/300 s, so
    # most of the last hundred (sent within well under ten seconds) are refused.
    assert all(r.status_code == 202 for r in answers[: config.rate_per_ip])
    assert len(refused) >= 50
    first = refused[0]
    assert first.get_json()["error"]["code"] == "rate_limited"
    assert int(first.headers["Retry-After"]) >= 1
    assert first.headers["RateLimit-Limit"] == str(config.rate_per_ip)
    assert first.headers["RateLimit-Remaining"] == "0"
    assert int(first.headers["RateLimit-Reset"]) >= 1
    # The page that sent it may read when to retry.
    assert first.headers["Access-Control-Allow-Origin"] == SHOP_A
    assert "Retry-After" in first.headers["Access-Control-Expose-Headers"]
    # Refused requests queue nothing: the buffer holds exactly the accepted beacons.
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == len(accepted)

    # Another visitor of the same site, and another site, are untouched.
    same_site = beacon(client, a, "203.0.113.6", 0, SHOP_A)
    other_site = beacon(client, b, "198.51.100.7", 0, SHOP_B)
    assert same_site.status_code == 202, same_site.get_json()
    assert other_site.status_code == 202, other_site.get_json()
    assert int(same_site.headers["RateLimit-Remaining"]) == config.rate_per_ip - 1


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(config, engine):
    a, *_ = two_sites(engine)
    strict = create_app(dataclasses.replace(config, rate_per_ip=3)).test_client()
    # A client that invents a new X-Forwarded-For per request is still one client.
    codes = [
        beacon(strict, a, "203.0.113.9", n, SHOP_A, **{"X-Forwarded-For": f"10.9.0.{n}"})
        for n in range(5)
    ]
    assert [r.status_code for r in codes] == [202, 202, 202, 429, 429]

    for trusted in ("1", "127.0.0.0/8, 10.0.0.0/8"):
        Redis.from_url(config.redis_url).delete(
            *Redis.from_url(config.redis_url).keys("firsttag:rl:*")
        )
        proxied = create_app(
            dataclasses.replace(config, rate_per_ip=1, trusted_proxies=trusted)
        ).test_client()
        # Behind the proxy, each forwarded client has its own limit.
        for n in range(3):
            ok = beacon(proxied, a, "127.0.0.1", n, SHOP_A, **{"X-Forwarded-For": f"192.0.2.{n}"})
            assert ok.status_code == 202, (trusted, ok.get_json())
        again = beacon(proxied, a, "127.0.0.1", 9, SHOP_A, **{"X-Forwarded-For": "192.0.2.0"})
        assert again.status_code == 429, trusted
    # With CIDRs, a hop the client wrote itself (left of the proxies) is never believed.
    spoofed = beacon(
        proxied, a, "127.0.0.1", 10, SHOP_A, **{"X-Forwarded-For": "192.0.2.77, 192.0.2.0"}
    )
    assert spoofed.status_code == 429
    # A direct client outside the trusted networks cannot set its address at all.
    direct = beacon(proxied, a, "203.0.113.50", 11, SHOP_A, **{"X-Forwarded-For": "192.0.2.0"})
    assert direct.status_code == 202


def test_per_site_browser_limit_is_a_site_setting(client, engine):
    a, _, b, _ = two_sites(engine)
    update_settings(engine, a.id, browser_rate_per_minute=5)
    # Five visitors, one request each, use up site A's minute; the sixth is refused.
    codes = [beacon(client, a, f"203.0.113.{n}", n, SHOP_A).status_code for n in range(1, 7)]
    assert codes == [202] * 5 + [429]
    assert beacon(client, b, "203.0.113.1", 99, SHOP_B).status_code == 202


def test_server_limit_is_per_secret_key_and_a_batch_counts_its_items(client, engine):
    a, a_secret, b, b_secret = two_sites(engine)
    update_settings(engine, a.id, server_rate_per_minute=10)

    def batch(secret: str, first: int) -> Any:
        events = [
            {
                "type": "conversion",
                "data": {"name": "purchase", "visitor_id": "v" * 32, "order_id": f"o{first + i}"},
            }
            for i in range(8)
        ]
        return client.post(
            "/api/v1/batch",
            json={"events": events},
            headers={"Authorization": f"Bearer {secret}"},
        )

    first = batch(a_secret, 0)
    assert first.status_code == 200, first.get_json()
    assert first.headers["RateLimit-Remaining"] == "2"
    second = batch(a_secret, 100)
    assert second.status_code == 429
    assert second.get_json()["error"]["code"] == "rate_limited"
    assert batch(b_secret, 0).status_code == 200


def test_reads_have_their_own_limit(client, engine):
    a, a_secret, _, b_secret = two_sites(engine)
    update_settings(engine, a.id, reads_rate_per_minute=3)

    def read(secret: str, path: str) -> int:
        return client.get(path, headers={"Authorization": f"Bearer {secret}"}).status_code

    paths = ["/api/v1/analytics/funnel", "/api/v1/analytics/timeseries", "/api/v1/conversions"]
    assert [read(a_secret, p) for p in paths] == [200, 200, 200]
    assert read(a_secret, "/api/v1/analytics/funnel") == 429
    assert read(b_secret, "/api/v1/analytics/funnel") == 200


def test_the_limiter_fails_open_for_reads_when_redis_is_down(tmp_path, config, engine):
    a, a_secret, *_ = two_sites(engine)
    dead = dataclasses.replace(config, redis_url="redis://127.0.0.1:1/0")
    client = create_app(dead).test_client()
    read = client.get("/api/v1/analytics/funnel", headers={"Authorization": f"Bearer {a_secret}"})
    assert read.status_code == 200  # reads need only the database
    write = beacon(client, a, "203.0.113.5", 0, SHOP_A)
    assert write.status_code == 503  # nothing can be queued: the client retries later


# -- mode: "wait" ------------------------------------------------------------------------


def test_waits_are_bounded_per_site_and_per_process_so_beacons_still_answer(
    live_url, engine, config, worker
):
    """Two sites send three wait-mode leads each while no worker runs.

    Each site may hold one wait (FIRSTTAG_WAIT_SLOTS_SITE=1), the process two: the other
    four are answered at once as queued, a third site's wait too, and beacons answer. Once
    the worker runs, the two held waits answer with the stored record.
    """
    worker.stop()  # nothing is stored until it starts again: the held waits stay held
    a, a_secret, b, b_secret = two_sites(engine)
    c, c_secret = create_site(engine, "C", ["https://shop-c.example"])
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def lead(secret: str, n: int) -> requests.Response:
        body = {"clickId": f"clk{n}", "eventName": "Signup", "customerExternalId": f"u{n}"}
        return requests.post(
            f"{live_url}/api/v1/track/lead",
            json={**body, "mode": "wait"},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )

    def send(secret: str, n: int) -> None:
        response = lead(secret, n)
        with lock:
            answers.append(response)

    threads = [
        threading.Thread(target=send, args=(secret, n))
        for n, secret in enumerate([a_secret, b_secret] * 3)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(answers) >= 4, 20, "the waits over the bound to be answered")
    with lock:
        early = list(answers)
    assert len(early) == 4, [r.json() for r in early]
    for r in early:
        # 200, not 202, on Dub's route: Dub's SDKs take no other 2xx; `pending` says it.
        assert r.status_code == 200 and r.json()["pending"] is True, r.json()

    # Both slots of this process are held: a third site is answered at once, as queued.
    third = lead(c_secret, 99)
    assert third.status_code == 200 and third.json()["pending"] is True
    # Browser traffic is not stuck behind the waits.
    ping = requests.post(
        f"{live_url}/api/v1/beacon",
        data=json.dumps(
            {"siteKey": a.site_key, "id": "beacon-during-waits", "name": "x", "visitorId": "v" * 32}
        ),
        headers={"Origin": SHOP_A, "Content-Type": "text/plain"},
        timeout=30,
    )
    assert ping.status_code == 202
    assert len(answers) == 4  # the two held waits are still waiting

    worker.start()
    for t in threads:
        t.join(30)
    held = [r for r in answers if r not in early]
    assert len(held) == 2
    for r in held:
        assert r.status_code == 200, r.json()
        assert r.json()["conversion"]["name"] == "Signup"


# -- CORS and Referrer-Policy ------------------------------------------------------------


def test_a_preflight_names_its_site_and_answers_only_for_its_origins(client, engine):
    a, _, b, _ = two_sites(engine)
    preflight = {"Access-Control-Request-Method": "POST"}

    def options(site_key: str, origin: str) -> Any:
        return client.options(
            f"/api/v1/sessions/convert?siteKey={site_key}",
            headers={"Origin": origin, **preflight},
        )

    refused = options(b.site_key, SHOP_A)
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    allowed = options(b.site_key, SHOP_B)
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP_B
    assert options("pk_unknown", SHOP_B).status_code == 403
    # The seeds' URL, which names no site, still preflights for a known origin...
    bare = client.options("/api/v1/sessions/convert", headers={"Origin": SHOP_A, **preflight})
    assert bare.status_code == 204
    # ...and the request itself is refused unless its key's site allows the origin.
    post = client.post(
        "/api/v1/sessions/convert",
        json={"sessionKey": "x"},
        headers={"Origin": SHOP_A, "Authorization": f"Bearer {b.site_key}"},
    )
    assert post.status_code == 403
    assert "Access-Control-Allow-Origin" not in post.headers


def test_every_response_sends_referrer_policy_no_referrer(client, config, engine):
    a, _, _, _ = two_sites(engine)
    page = client.get(
        install_link(a, "http://localhost", config.secret_key).removeprefix("http://localhost")
    )
    assert page.status_code == 200 and page.mimetype == "text/html"
    for response in (
        page,
        client.get(f"/t/{a.id}.js"),
        beacon(client, a, "203.0.113.5", 0, SHOP_A),
        client.get("/no/such/page"),
        client.get("/healthz"),
    ):
        assert response.headers["Referrer-Policy"] == "no-referrer", response.request.path


def test_rate_settings_are_validated(engine):
    a, *_ = two_sites(engine)
    try:
        update_settings(engine, a.id, server_rate_per_minute=0)
    except ValueError as exc:
        assert "server rate" in str(exc)
    else:
        raise AssertionError("a zero rate was accepted")


def test_config_reads_the_rate_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("FIRSTTAG_RATE_PER_IP", "42")
    monkeypatch.setenv("FIRSTTAG_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("FIRSTTAG_SECRET_KEY", "x")
    config = Config.from_env(tmp_path)
    assert config.rate_per_ip == 42
    assert config.trusted_proxies == "10.0.0.0/8"
    assert config.rate_browser == 60_000
