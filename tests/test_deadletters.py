"""No event can block another: dead letters, `firsttag failed`, byte bounds and /readyz.

Everything runs on the real parts: a real Redis, a real RQ worker process, a real SQLite
file (or PostgreSQL with FIRSTTAG_TEST_DATABASE_URL), the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from firsttag import store
from firsttag.admission import CLAIM_PREFIX
from firsttag.config import Config
from firsttag.events import deadletters
from firsttag.events.buffer import (
    BUFFER_KEY,
    SITE_BYTES_KEY,
    TOTAL_BYTES_KEY,
    EventBuffer,
)
from firsttag.sites import create_site
from firsttag.web.app import create_app
from firsttag.wire import encode
from redis import Redis
from sqlalchemy import func, select, text

from tests.support import WorkerProcess, config_env, wait_until
from tests.test_api import register
from tests.test_pipeline import conversion, count, event

ORIGIN = "https://shop.example"


def failed(config: Config, *args: str) -> str:
    """Run `firsttag failed ARGS` for real; return its output."""
    done = subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", "failed", *args],
        env=config_env(config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def refuse_conversions_named(engine: Any, name: str) -> None:
    """A rule of the database (a trigger) that refuses conversions called ``name``."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_rule BEFORE INSERT ON conversions "
                    f"WHEN NEW.name = '{name}' BEGIN SELECT RAISE(ABORT, 'refused by a rule'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse_rule() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused by a rule' "
                    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_rule BEFORE INSERT ON conversions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_rule()"
                )
            )


def fix_the_rule(engine: Any) -> None:
    """The operator's fix: the rule goes."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER refuse_rule"))
        else:
            conn.execute(text("DROP TRIGGER refuse_rule ON conversions"))
            conn.execute(text("DROP FUNCTION IF EXISTS refuse_rule()"))


def stored_keys(engine: Any, dedup_key: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(store.conversions)
            .where(store.conversions.c.dedup_key == dedup_key)
        ).scalar_one()


def too_deep(site_id: str) -> str:
    """An event as the door would buffer it, with a body too deep for json.loads."""
    depth = 100_000
    head = json.dumps(
        {"kind": "conversion", "site": site_id, "receivedAt": store.utcnow()},
        separators=(",", ":"),
    )[:-1]
    return head + ',"data":' + "[" * depth + "]" * depth + "}"


def test_poison_events_of_each_class_never_hold_back_two_sites(
    config, engine, site, client, tmp_path
):
    other, _ = create_site(engine, "Other", [ORIGIN])
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    refuse_conversions_named(engine, "Refused")
    kind, _, now, bad_date = conversion(site.id, 900)
    bad_date = dict(bad_date, occurredAt="yesterday")  # the worker's date parsing refuses it
    refused = dict(conversion(other.id, 901)[3], name="Refused")  # a rule refuses the row
    poison = [
        (site.id, encode(event(kind, site.id, now, bad_date))),
        (other.id, too_deep(other.id)),
        (site.id, encode(event("session", site.id, now, {"sessionId": "s1", "visitorId": None}))),
        (other.id, encode(event(kind, other.id, now, refused))),
    ]
    for n, (site_id, bad) in enumerate(poison):
        buffer.push(event(*conversion(site.id if n % 2 else other.id, n)))  # good events between
        buffer.push_many(site_id, [bad])
    buffer.push(event(*conversion(site.id, 4)))

    worker = WorkerProcess(config, tmp_path / "worker.log")
    worker.start()
    try:
        wait_until(lambda: count(engine) == 5, 30, "the five good events of both sites")
        wait_until(lambda: deadletters.count(redis) == 4, 10, "four dead letters")
        listed = failed(config)
        assert "4 dead letters" in listed
        for reason, error in [
            (deadletters.INVALID_EVENT, "ValueError"),
            (deadletters.UNDECODABLE, "RecursionError"),
            (deadletters.REFUSED_BY_DATABASE, "IntegrityError"),  # NOT NULL
            (deadletters.REFUSED_BY_DATABASE, "IntegrityError: refused by a rule"),
        ]:
            assert f"{reason}: {error}" in listed
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["checks"]["deadLetters"]["count"] == 4

        fix_the_rule(engine)
        assert failed(config, "--requeue").startswith("requeued 4")
        wait_until(lambda: stored_keys(engine, refused["dedupKey"]) == 1, 30, "the fixed event")
        # The three still broken come back as dead letters; nothing is stored twice.
        wait_until(
            lambda: deadletters.count(redis) == 3 and redis.llen(BUFFER_KEY) == 0, 30, "3 left"
        )
        assert failed(config, "--requeue").startswith("requeued 3")
        wait_until(
            lambda: deadletters.count(redis) == 3 and redis.llen(BUFFER_KEY) == 0, 30, "3 left"
        )
        assert count(engine) == 6 and stored_keys(engine, refused["dedupKey"]) == 1
        # The byte counters followed every push, trim, dead letter and requeue.
        assert redis.hgetall(SITE_BYTES_KEY) == {} and redis.get(TOTAL_BYTES_KEY) is None

        ids = [letter.id for letter in deadletters.letters(redis)]
        assert failed(config, "--drop", *ids[:2]).startswith("dropped 2 of 2")
        assert [letter.id for letter in deadletters.letters(redis)] == ids[2:]
    finally:
        worker.stop()


def test_a_resent_conversion_that_was_dead_lettered_is_admitted_again(
    config, engine, site_and_secret, client, worker
):
    """Its claim went with it: the repeat is not answered "duplicate" for a lost event."""
    redis = Redis.from_url(config.redis_url)
    refuse_conversions_named(engine, "Refused")
    headers = {"Authorization": f"Bearer {site_and_secret[1]}"}
    body = {"name": "Refused", "order_id": "o1"}

    first = client.post("/api/v1/conversions", json=body, headers=headers)
    assert first.get_json()["duplicate"] is False
    wait_until(lambda: deadletters.count(redis) == 1, 20, "the dead letter")
    assert not redis.keys(CLAIM_PREFIX + "*")
    again = client.post("/api/v1/conversions", json=body, headers=headers)
    assert again.status_code == 200 and again.get_json()["duplicate"] is False
    wait_until(lambda: deadletters.count(redis) == 2, 20, "the second dead letter")

    fix_the_rule(engine)
    failed(config, "--requeue")
    wait_until(lambda: stored_keys(engine, "conversion:o1") == 1, 20, "the stored conversion")
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0, 20, "an empty buffer")
    assert stored_keys(engine, "conversion:o1") == 1 and deadletters.count(redis) == 0
    third = client.post("/api/v1/conversions", json=body, headers=headers)
    assert third.get_json()["duplicate"] is True  # now it is stored


def test_one_site_over_its_byte_bound_does_not_refuse_another(config, engine, site):
    other, _ = create_site(engine, "Other", [ORIGIN])
    client = create_app(replace(config, max_site_backlog_bytes=2000)).test_client()
    statuses = [register(client, site, f"{n:032d}").status_code for n in range(20)]
    assert statuses[0] == 200 and statuses[-1] == 429
    refused = register(client, site, "f" * 32)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert refused.get_json()["error"]["code"] == "backlog_full"
    assert register(client, other, "e" * 32).status_code == 200
    redis = Redis.from_url(config.redis_url)
    assert int(redis.hget(SITE_BYTES_KEY, site.id)) <= 2000


def test_a_redis_out_of_memory_is_503_json(config, site, client):
    redis = Redis.from_url(config.redis_url)
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", "1")
    try:
        response = register(client, site)
    finally:
        redis.config_set("maxmemory", "0")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "queue_unavailable"


def test_readyz_fails_when_events_wait_without_a_worker(config, site, client):
    assert client.get("/readyz").status_code == 200  # nothing waits: nothing to store
    buffer = EventBuffer(Redis.from_url(config.redis_url), config.queue_name)
    kind, site_id, _, data = conversion(site.id, 1)
    buffer.push(event(kind, site_id, "2000-01-01T00:00:00.000000Z", data))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["failing"] == ["worker", "backlog"]
    assert body["checks"]["backlog"]["events"] == 1
    assert body["checks"]["backlog"]["bytes"] > 0
    assert body["checks"]["worker"]["heartbeatAgeSeconds"] is None


@pytest.mark.skipif(
    "postgresql" in (__import__("os").environ.get("FIRSTTAG_TEST_DATABASE_URL") or ""),
    reason="holds SQLite's write lock; PostgreSQL writers queue on a lock without failing",
)
def test_a_locked_database_makes_the_batch_wait_then_store_once(
    config, engine, site, client, tmp_path
):
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for n in range(50):
        buffer.push(event(*conversion(site.id, n)))
    lock = sqlite3.connect(config.database_url.removeprefix("sqlite:///"))
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
    worker = WorkerProcess(config, tmp_path / "worker.log")
    worker.start()
    try:
        wait_until(lambda: "store unavailable" in worker.log.read_text(), 60, "the batch to wait")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "store" in ready.get_json()["failing"]
        lock.rollback()
        wait_until(lambda: count(engine) == 50, 60, "the waiting batch, stored")
        wait_until(lambda: redis.llen(BUFFER_KEY) == 0, 20, "an empty buffer")
        assert count(engine) == 50 and deadletters.count(redis) == 0
        assert client.get("/readyz").status_code == 200
    finally:
        lock.close()
        worker.stop()
