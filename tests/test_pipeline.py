"""The Redis → RQ → SQL pipeline: batches, crashes, replays, stale drainers, poison events."""

from __future__ import annotations

import json
import threading

from firsttag import store, wire
from firsttag.events import deadletters
from firsttag.events.buffer import BUFFER_KEY, LEASE_KEY, EventBuffer
from firsttag.events.drain import Drainer
from redis import Redis
from sqlalchemy import func, select

from tests.support import WorkerProcess, wait_until


def conversion(site_id: str, n: int) -> tuple[str, str, str, dict]:
    now = store.utcnow()
    data = {
        "dedupKey": f"browser:ev{n:08d}",
        "kind": "sale",
        "source": "browser",
        "name": "Purchase",
        "visitorId": "v" * 32,
        "value": n,
        "currency": "EUR",
        "occurredAt": now,
    }
    return ("conversion", site_id, now, data)


def event(kind: str, site_id: str, received_at: str, data: dict) -> wire.Event:
    """The typed event of ``kind`` with camelCase ``data``, as the web tier would push it."""
    return wire.Event(site_id, received_at, wire.body_from(kind, data))


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.conversions)).scalar_one()


def test_a_burst_is_drained_in_batches_by_few_jobs(config, engine, site, worker):
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for n in range(2500):  # more than two batches of 1,000
        buffer.push(event(*conversion(site.id, n)))
    wait_until(lambda: count(engine) == 2500, 60, "2,500 stored conversions")
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0 and not redis.exists(LEASE_KEY), 20, "idle")
    assert redis.llen(f"rq:queue:{config.queue_name}") == 0
    # RQ logs one line per job it starts: a job per event would be 2,500 lines.
    jobs = worker.log.read_text().count("firsttag.events.drain.drain(")
    assert 1 <= jobs <= 25


def test_replayed_events_are_not_counted_twice(config, engine, site, worker):
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for _ in range(3):
        for n in range(50):
            buffer.push(event(*conversion(site.id, n)))
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0, 30, "the buffer to drain")
    assert count(engine) == 50


def test_a_batch_committed_but_not_trimmed_is_written_once(config, engine, site):
    """The crash window between COMMIT and LTRIM: the next drainer replays the batch."""
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for n in range(10):
        buffer.push(event(*conversion(site.id, n)))
    drainer = Drainer(redis, engine, batch_size=1000)
    drainer.write_batch(redis.lrange(BUFFER_KEY, 0, -1))  # committed; "crash" before trim
    assert count(engine) == 10 and redis.llen(BUFFER_KEY) == 10
    redis.delete(LEASE_KEY)  # the dead drainer's lease has expired
    assert drainer.run("next-token") == 10
    assert count(engine) == 10
    assert redis.llen(BUFFER_KEY) == 0 and not redis.exists(LEASE_KEY)


def lranges(redis: Redis) -> int:
    """How many LRANGE commands Redis has run (the drainer's reads of the buffer)."""
    return int(redis.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0))


def test_a_lingering_drainer_takes_what_arrives_meanwhile_then_lets_go(config, engine, site):
    """Caught up, the drain waits between reads instead of ending: one job, both bursts."""
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for n in range(5):
        buffer.push(event(*conversion(site.id, n)))
    redis.delete(LEASE_KEY, f"rq:queue:{config.queue_name}")  # no worker here: we drain
    drainer = Drainer(redis, engine, batch_size=1000, linger_s=0.3)
    done: list[int] = []
    reads_before = lranges(redis)
    thread = threading.Thread(target=lambda: done.append(drainer.run("lingering")))
    thread.start()
    wait_until(lambda: count(engine) == 5, 30, "the first burst stored")
    # Its second read, after the first batch and a linger, found the buffer empty.
    wait_until(lambda: lranges(redis) >= reads_before + 2, 30, "a read of the empty buffer")
    for n in range(5, 10):  # the lease is still held: these schedule no new job
        buffer.push(event(*conversion(site.id, n)))
    wait_until(lambda: count(engine) == 10, 30, "the second burst stored by the same drain")
    thread.join(60)
    assert done == [10]
    assert redis.llen(BUFFER_KEY) == 0 and not redis.exists(LEASE_KEY)
    assert redis.llen(f"rq:queue:{config.queue_name}") == 0


def test_a_worker_asked_to_stop_hands_over_while_events_keep_coming(config, engine, site, tmp_path):
    """A warm shutdown ends the lingering drain at once, not when the stream pauses."""
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    first = WorkerProcess(config, tmp_path / "first.log")
    first.start()
    sent: list[int] = []
    streaming = threading.Event()
    streaming.set()
    pace = threading.Event()  # never set: its wait spaces the events out

    def stream() -> None:  # a steady stream: the buffer is never empty for long
        while streaming.is_set():
            buffer.push(event(*conversion(site.id, len(sent))))
            sent.append(len(sent))
            pace.wait(0.005)

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        wait_until(lambda: count(engine) > 0, 30, "the stream being stored")
        assert first.process is not None
        first.process.terminate()  # SIGTERM, as firsttag serve and systemd stop a worker
        wait_until(lambda: first.process.poll() is not None, 20, "the worker to stop")
    finally:
        streaming.clear()
        sender.join()
        first.kill()
    second = WorkerProcess(config, tmp_path / "second.log")
    second.start()
    try:
        wait_until(lambda: count(engine) == len(sent), 30, "every event stored, once")
    finally:
        second.stop()


def test_a_drainer_that_lost_its_lease_does_not_trim(config, engine, site):
    redis = Redis.from_url(config.redis_url)
    for n in range(5):
        EventBuffer(redis, config.queue_name).push(event(*conversion(site.id, n)))
    redis.set(LEASE_KEY, "someone-else")
    assert Drainer(redis, engine, 1000).run("stale-token") == 0
    assert redis.llen(BUFFER_KEY) == 5 and count(engine) == 0


def test_undecodable_events_go_to_the_dead_letters(config, engine, site):
    redis = Redis.from_url(config.redis_url)
    EventBuffer(redis, config.queue_name).push(event(*conversion(site.id, 1)))
    redis.rpush(BUFFER_KEY, b"not json", json.dumps({"kind": "unknown"}))
    EventBuffer(redis, config.queue_name).push(event(*conversion(site.id, 2)))
    redis.delete(LEASE_KEY)
    assert Drainer(redis, engine, 1000).run("t") == 4
    assert count(engine) == 2
    found = deadletters.letters(redis)
    assert [(d.event, d.reason) for d in found] == [
        (b"not json", deadletters.UNDECODABLE),
        (b'{"kind": "unknown"}', deadletters.NOT_AN_EVENT),
    ]


def test_earliest_verification_wins_whatever_the_order(engine, site):
    with engine.begin() as conn:
        for day in ("02", "01", "03"):
            row = {"site_id": site.id, "session_id": "s1", "verified_at": f"2026-01-{day}T00:00Z"}
            store.record_verifications(conn, [row])
        rows = conn.execute(select(store.session_verifications.c.verified_at)).scalars().all()
    assert rows == ["2026-01-01T00:00Z"]


def test_killed_worker_loses_nothing_and_doubles_nothing(config, engine, site, tmp_path):
    """SIGKILL a real worker mid-drain, start another: every event is stored exactly once."""
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    total = 20_000
    pipe_events = [conversion(site.id, n) for n in range(total)]
    for ev in pipe_events:
        buffer.push(event(*ev))
    first = WorkerProcess(config, tmp_path / "first.log")
    first.start()
    wait_until(lambda: count(engine) > 0, 60, "the first batches")
    first.kill()
    stored_at_kill = count(engine)
    assert stored_at_kill < total, "the worker finished before it could be killed"

    second = WorkerProcess(config, tmp_path / "second.log")
    second.start()
    try:
        wait_until(lambda: count(engine) == total, 90, "all events after the restart")
        wait_until(lambda: redis.llen(BUFFER_KEY) == 0, 30, "an empty buffer")
        with engine.connect() as conn:
            distinct = conn.execute(
                select(func.count(func.distinct(store.conversions.c.dedup_key)))
            ).scalar_one()
        assert distinct == count(engine) == total
    finally:
        second.stop()
