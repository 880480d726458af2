"""Is the pipeline storing events? The checks behind ``GET /readyz`` and the worker's pulse.

``/healthz`` says the web process answers; readiness says more: Redis takes events, the
store takes writes, a worker is alive, and the backlog is moving. Each check is cheap
(a few Redis reads and one rolled-back write) so a load balancer may poll it every few
seconds.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import Engine

from firsttag.events import deadletters
from firsttag.events.buffer import BUFFER_KEY, TOTAL_BYTES_KEY
from firsttag.wire import envelope

HEARTBEAT_KEY = "firsttag:worker-heartbeat"
# RQ's set of registered workers (every queue); its members expire with their TTL.
RQ_WORKERS_KEY = "rq:workers"
# A heartbeat older than this is gone: it says nothing about a worker any more.
HEARTBEAT_TTL_S = 24 * 3600

# How long the store check waits for SQLite's write lock; the worker holds it for one
# batch at a time, well under this.
PROBE_LOCK_WAIT_MS = 2000


def beat(redis: Redis) -> None:
    """Record that a worker is alive now (any worker: readiness needs one, not each)."""
    redis.set(HEARTBEAT_KEY, repr(time.time()), ex=HEARTBEAT_TTL_S)


def store_writable(engine: Engine) -> str | None:
    """None when the store accepts a write now, else why not (``Type: message``).

    The probe creates a table inside a transaction and rolls it back: a real write on
    both databases (SQLite takes its write lock and fails on a read-only file; PostgreSQL
    fails in a read-only or recovering server), leaving nothing behind. A locked SQLite
    file counts as not writable after ``PROBE_LOCK_WAIT_MS``.
    """
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={PROBE_LOCK_WAIT_MS}")
            try:
                if sqlite:  # pysqlite runs DDL outside a transaction unless one is opened
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.exec_driver_sql("CREATE TABLE firsttag_write_probe (x INTEGER)")
            finally:
                conn.rollback()
                if sqlite:  # back to the pool's setting (see store._tune_sqlite)
                    conn.exec_driver_sql("PRAGMA busy_timeout=10000")
        return None
    except Exception as exc:  # any failure means "not writable", whatever its type
        return deadletters.describe(exc)


def report(
    redis: Redis, engine: Engine, max_heartbeat_age_s: float, max_event_age_s: float
) -> tuple[dict[str, Any], bool]:
    """The readiness report and whether events are being stored.

    Fails when Redis does not answer, the store refuses a write, events wait but no
    worker has shown life for ``max_heartbeat_age_s``, or the oldest waiting event is
    older than ``max_event_age_s``. Dead letters are reported, not failed on: they wait
    for a person, and everything else is still stored.
    """
    checks: dict[str, Any] = {}
    failing: list[str] = []
    store_error = store_writable(engine)
    checks["store"] = {"ok": store_error is None}
    if store_error:
        checks["store"]["error"] = store_error
        failing.append("store")
    try:
        with redis.pipeline(transaction=False) as pipe:
            pipe.llen(BUFFER_KEY).get(TOTAL_BYTES_KEY).lindex(BUFFER_KEY, 0)
            pipe.get(HEARTBEAT_KEY).xlen(deadletters.DEAD_LETTER_KEY)
            events, size, head, heartbeat, letters = pipe.execute()
    except Exception as exc:  # Redis down: nothing else can be known
        checks["redis"] = {"ok": False, "error": deadletters.describe(exc)}
        return {"status": "unavailable", "failing": ["redis", *failing], "checks": checks}, False
    checks["redis"] = {"ok": True}

    now = time.time()
    heartbeat_age = round(now - float(heartbeat), 1) if heartbeat else None
    worker_ok = events == 0 or (heartbeat_age is not None and heartbeat_age <= max_heartbeat_age_s)
    checks["worker"] = {"ok": worker_ok, "heartbeatAgeSeconds": heartbeat_age}
    oldest_age = _age(head, now)
    backlog_ok = oldest_age is None or oldest_age <= max_event_age_s
    checks["backlog"] = {
        "ok": backlog_ok,
        "events": events,
        "bytes": int(size or 0),
        "oldestEventAgeSeconds": oldest_age,
    }
    checks["deadLetters"] = {"count": letters}
    failing += [name for name, ok in (("worker", worker_ok), ("backlog", backlog_ok)) if not ok]
    ready = not failing
    body = {"status": "ready" if ready else "unavailable", "failing": failing, "checks": checks}
    return body, ready


def _age(head: bytes | None, now: float) -> float | None:
    """Seconds since the event ``head`` was received (None when unknown or no event)."""
    if head is None:
        return None
    _, received_at = envelope(head)
    if received_at is None:
        return None
    try:
        return round(now - datetime.fromisoformat(received_at).timestamp(), 1)
    except ValueError:
        return None


def snapshot(redis: Redis) -> dict[str, Any]:
    """The pipeline's shared state in Redis: backlog, oldest event, dead letters, workers.

    One round trip; raises ``redis.RedisError`` when Redis does not answer. Read by
    ``GET /metrics`` (gauges), a worker's metrics port and ``firsttag status``.
    """
    with redis.pipeline(transaction=False) as pipe:
        pipe.llen(BUFFER_KEY).get(TOTAL_BYTES_KEY).lindex(BUFFER_KEY, 0)
        pipe.get(HEARTBEAT_KEY).xlen(deadletters.DEAD_LETTER_KEY).scard(RQ_WORKERS_KEY)
        events, size, head, heartbeat, letters, workers = pipe.execute()
    now = time.time()
    return {
        "backlog": int(events),
        "backlogBytes": int(size or 0),
        "oldestEventAgeSeconds": _age(head, now),
        "heartbeatAgeSeconds": round(now - float(heartbeat), 1) if heartbeat else None,
        "deadLetters": int(letters),
        "workers": int(workers),
    }
