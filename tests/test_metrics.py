"""``GET /metrics``: Prometheus text from every process of a host, and who may read it."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import requests
from firsttag.web.app import create_app

from tests.support import ServerProcess, config_env, wait_until

ORIGIN = "https://shop.example"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the exposition ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            got = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if got == want:
                return float(match[3])
    return 0.0


@pytest.fixture
def served(config, site, tmp_path):
    """`firsttag serve` (2 granian processes, 1 worker) on the test's Redis and store."""
    env = config_env(config)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = ServerProcess(
        ["serve", "--web-processes", "2", "--workers", "1"], env, tmp_path / "serve.log"
    )
    server.start()
    yield server
    server.stop()


def test_a_stored_event_moves_the_counters_summed_over_every_process(served, site):
    def scrape() -> str:
        response = requests.get(f"{served.url}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.text

    before = scrape()
    assert sample(before, "firsttag_events_stored_total") == 0
    for n in range(6):  # several requests, so both granian processes likely answer some
        beacon = {
            "siteKey": site.site_key,
            "id": f"metric{n:06d}",
            "name": "Purchase",
            "visitorId": "v" * 32,
        }
        answer = requests.post(
            f"{served.url}/api/v1/beacon", json=beacon, headers={"Origin": ORIGIN}, timeout=5
        )
        assert answer.status_code == 202, answer.text

    def stored() -> str | None:
        text = scrape()
        return text if sample(text, "firsttag_events_stored_total") >= 6 else None

    after = wait_until(stored, 30, "the worker's stored counter in the web's /metrics")
    assert sample(after, "firsttag_events_total", outcome="accepted") == 6
    assert (
        sample(
            after,
            "firsttag_http_requests_total",
            endpoint="/api/v1/beacon",
            method="POST",
            status="202",
        )
        == 6
    )
    assert (
        sample(after, "firsttag_http_request_duration_seconds_count", endpoint="/api/v1/beacon")
        == 6
    )
    assert sample(after, "firsttag_drain_batch_events_count") >= 1
    assert sample(after, "firsttag_backlog_events") == 0
    assert "firsttag_backlog_oldest_event_age_seconds" in after


def test_rejected_and_rate_limited_requests_are_counted(client, site):
    bad = client.post("/api/v1/beacon", json={"siteKey": site.site_key}, headers={"Origin": ORIGIN})
    assert bad.status_code == 400
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "firsttag_events_total", outcome="rejected") >= 1


def test_metrics_are_refused_through_a_proxy_and_need_the_token_when_one_is_set(config):
    open_app = create_app(config).test_client()
    assert open_app.get("/metrics").status_code == 200  # loopback, no proxy
    assert open_app.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert open_app.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403

    guarded = create_app(replace(config, metrics_token="m3trics-t0ken")).test_client()
    refused = guarded.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "metrics_token_required"
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = guarded.get(
        "/metrics",
        headers={"Authorization": "Bearer m3trics-t0ken"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert ok.status_code == 200
    assert "firsttag_backlog_events" in ok.get_data(as_text=True)
