"""Accepted events survive a full stop and start of `firsttag serve` with no worker running."""

from __future__ import annotations

import json

import requests

from e2e.conftest import Serve
from tests.support import wait_until


def test_events_accepted_without_a_worker_are_stored_after_a_restart(tmp_path):
    web_only = Serve(tmp_path, "--workers", "0")
    url = web_only.start()
    site = web_only.create_site("https://shop.example")
    for n in range(200):
        body = {
            "siteKey": site["siteKey"],
            "id": f"restart{n:08d}",
            "name": "Buy",
            "visitorId": "v" * 32,
            "value": n,
            "currency": "EUR",
        }
        assert (
            requests.post(url + "/api/v1/beacon", data=json.dumps(body), timeout=10).status_code
            == 202
        )
    auth = {"Authorization": f"Bearer {site['secretKey']}"}
    assert (
        requests.get(url + "/api/v1/conversions", headers=auth, timeout=10).json()["data"] == []
    )  # no worker: nothing stored yet, all 200 wait in Redis
    web_only.stop()

    full = Serve(tmp_path)
    url = full.start()
    try:

        def stored() -> int:
            page = requests.get(url + "/api/v1/conversions?limit=500", headers=auth, timeout=10)
            return len(page.json()["data"])

        wait_until(lambda: stored() == 200, 60, "the 200 events from before the restart")
    finally:
        full.stop()
