"""Several hosts: 2 ``firsttag web`` + 2 ``firsttag worker`` on one Redis and one database.

Concurrent duplicates and retries go to both web processes while a worker is SIGKILLed
mid-stream: every acknowledged event is stored exactly once. Meant for PostgreSQL
(``scripts/test-postgres``, the multi-host deployment); it also runs on SQLite, where
the two "hosts" share one file, which is what one machine with many processes does.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from firsttag import store
from firsttag.events.buffer import BUFFER_KEY
from firsttag.events.deadletters import DEAD_LETTER_KEY
from redis import Redis
from sqlalchemy import func, select

from tests.support import ServerProcess, WorkerProcess, config_env, wait_until
from tests.test_tracking import selektable_order

ORIGIN = "https://shop.example"
ORDERS = 80
BEACONS = 80


@pytest.fixture
def hosts(config, site_and_secret, tmp_path):
    """Two web hosts and two workers, each with a data dir of its own."""
    env = config_env(config)
    env.update(FIRSTTAG_RATE_PER_IP="1000000", FIRSTTAG_RATE_SERVER="1000000")
    env.update(FIRSTTAG_RATE_BROWSER="1000000")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    webs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        web_env = dict(env, FIRSTTAG_DATA_DIR=str(tmp_path / name))
        webs.append(ServerProcess(["web", "--processes", "1"], web_env, tmp_path / f"{name}.log"))
    workers = [WorkerProcess(config, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for process in [*webs, *workers]:
            process.start()
        yield webs, workers
    finally:
        for process in [*webs, *workers]:
            process.stop()


def test_every_acknowledged_event_is_stored_once_across_hosts_and_a_killed_worker(
    config, site_and_secret, engine, hosts
):
    site, secret = site_and_secret
    (web_a, web_b), (doomed, survivor) = hosts
    orders = {f"mp_{n}": selektable_order(f"mp_{n}") for n in range(ORDERS)}
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def send_order(url: str, order_id: str) -> tuple[str, dict | None]:
        answer = session.post(
            f"{url}/api/webhooks/orders",
            json=orders[order_id],
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        return order_id, answer.json() if answer.status_code == 200 else None

    def send_beacon(url: str, n: int) -> tuple[str, bool]:
        body = {"siteKey": site.site_key, "id": f"mpbeacon{n:06d}", "name": "Lead"}
        body["visitorId"] = "v" * 32
        answer = session.post(
            f"{url}/api/v1/beacon", json=body, headers={"Origin": ORIGIN}, timeout=30
        )
        return f"browser:{body['id']}", answer.status_code == 202

    jobs = []
    for n in range(max(ORDERS, BEACONS)):
        order_id = f"mp_{n % ORDERS}"
        # The same order to both hosts at once, and a retry of it later; beacons too.
        jobs += [(send_order, web_a.url, order_id), (send_order, web_b.url, order_id)]
        jobs += [(send_beacon, web_a.url, n % BEACONS), (send_beacon, web_b.url, n % BEACONS)]
    jobs += [(send_order, web_b.url, f"mp_{n}") for n in range(0, ORDERS, 3)]  # retries
    half = len(jobs) // 2

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda job: job[0](job[1], job[2]), jobs[:half]))
        doomed.kill()  # SIGKILL, work-horse and all, while the rest is still coming in
        rest = list(pool.map(lambda job: job[0](job[1], job[2]), jobs[half:]))
    results = first + rest

    acknowledged_orders = Counter()
    new_orders = Counter()
    acknowledged_beacons = set()
    for key, answer in results:
        if key.startswith("browser:"):
            if answer:
                acknowledged_beacons.add(key)
        elif answer is not None:
            acknowledged_orders[key] += 1
            new_orders[key] += not answer["duplicate"]
    assert len(acknowledged_orders) == ORDERS and len(acknowledged_beacons) == BEACONS
    # The claim in Redis judged racing copies one after the other, across both hosts.
    assert set(new_orders.values()) == {1}

    redis = Redis.from_url(config.redis_url)
    expected = {f"order:{o}" for o in acknowledged_orders} | acknowledged_beacons

    def stored() -> Counter:
        with engine.connect() as conn:
            rows = conn.execute(
                select(store.conversions.c.dedup_key, func.count())
                .where(store.conversions.c.site_id == site.id)
                .group_by(store.conversions.c.dedup_key)
            ).all()
        return Counter({key: n for key, n in rows})

    wait_until(
        lambda: redis.llen(BUFFER_KEY) == 0 and set(stored()) == expected,
        90,
        "the surviving worker to store every acknowledged event",
    )
    assert set(stored().values()) == {1}
    assert redis.xlen(DEAD_LETTER_KEY) == 0
    assert survivor.process is not None and survivor.process.poll() is None
