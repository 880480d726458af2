"""The worker side: drain the Redis buffer into the SQL store, exactly once.

A drain job holds the drain lease (see :mod:`server.ingest`) and repeats:

1. read the oldest ``batch_size`` events (``LRANGE``, nothing removed yet);
2. write them in one transaction of idempotent inserts and COMMIT;
3. remove them from the buffer (``LTRIM``), but only while it still holds the lease.

A worker killed between 2 and 3 leaves the batch in Redis; the next drainer writes it
again and the unique keys turn every row into a no-op. A drainer that stalled past its
lease cannot trim: another drainer owns the head of the list by then.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

from redis import Redis
from rq import Worker, get_current_job
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, StatementError

from . import store
from .attribution import attribute_from, touches, window_start
from .config import Config
from .ingest import BUFFER_KEY, DEAD_LETTER_KEY, LEASE_KEY, EventBuffer, json_default

log = logging.getLogger(__name__)

RUNNING_LEASE_MS = 10_000
MAX_JOB_SECONDS = 300

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_TRIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('LTRIM', KEYS[1], ARGV[2], -1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('LLEN', KEYS[1])
"""

_RELEASE_IF_EMPTY = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@cache
def _engine(database_url: str) -> Engine:
    # One pool per process and URL; a forked work-horse gets its own on first use.
    return store.connect(database_url)


def drain(token: str) -> int:
    """RQ job: drain the buffer while holding the lease ``token``. Returns events written."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("drain() runs as an RQ job")
    config = Config.from_env()
    return Drainer(job.connection, _engine(config.database_url), config.batch_size).run(token)


class Drainer:
    """Moves events from the Redis buffer to the store in batches."""

    def __init__(self, redis: Redis, engine: Engine, batch_size: int) -> None:
        self.redis = redis
        self.engine = engine
        self.batch_size = batch_size
        self._acquire = redis.register_script(_ACQUIRE)
        self._trim = redis.register_script(_TRIM)
        self._release_if_empty = redis.register_script(_RELEASE_IF_EMPTY)
        self._release = redis.register_script(_RELEASE)

    def run(self, token: str, max_seconds: float = MAX_JOB_SECONDS) -> int:
        """Drain until the buffer is empty, the lease is lost or ``max_seconds`` pass."""
        if not self._acquire(keys=[LEASE_KEY], args=[token, RUNNING_LEASE_MS]):
            return 0  # another drainer holds the lease and will empty the buffer
        deadline = time.monotonic() + max_seconds
        written = 0
        while True:
            raw = self.redis.lrange(BUFFER_KEY, 0, self.batch_size - 1)
            if not raw:
                released = self._release_if_empty(keys=[BUFFER_KEY, LEASE_KEY], args=[token])
                if released != 0:
                    return written
                continue  # events arrived between LRANGE and the release
            written += self.write_batch(raw)
            left = self._trim(
                keys=[BUFFER_KEY, LEASE_KEY], args=[token, len(raw), RUNNING_LEASE_MS]
            )
            if left < 0:
                log.warning("drain lease lost; leaving the buffer to its new holder")
                return written
            if time.monotonic() > deadline:
                # Hand over to a fresh job so no job runs into RQ's timeout.
                self._release(keys=[LEASE_KEY], args=[token])
                EventBuffer(self.redis, _queue_name()).kick()
                return written

    def write_batch(self, raw: list[bytes]) -> int:
        """Store a batch in one transaction; returns how many events it held.

        An event the database refuses (it passed validation, so this is a bug) would block
        the buffer forever if the batch were retried as a whole, so on such an error the
        batch is written event by event and the refused ones go to the dead-letter list.
        Errors of the database itself (it is down, locked, full) propagate: the job fails,
        the events stay in Redis and a later drain retries them.
        """
        events = [_decode(item) for item in raw]
        good = [e for e in events if e is not None]
        bad = [item for item, e in zip(raw, events, strict=True) if e is None]
        try:
            with self.engine.begin() as conn:
                _write(conn, good)
        except OperationalError:
            raise
        except StatementError:
            for item, event in zip(raw, events, strict=True):
                if event is None:
                    continue
                try:
                    with self.engine.begin() as conn:
                        _write(conn, [event])
                except OperationalError:
                    raise
                except StatementError as exc:
                    log.error("event refused by the database, dead-lettered: %s", exc)
                    bad.append(item)
        if bad:
            self.redis.rpush(DEAD_LETTER_KEY, *bad)
        return len(raw)


def _decode(item: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(item)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("kind") not in _ROW_MAKERS:
        return None
    return event


def _write(conn: Any, events: list[dict[str, Any]]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _ROW_MAKERS}
    for event in events:
        by_kind[event["kind"]].append(event)
    store.insert_ignoring_duplicates(
        conn,
        store.sessions,
        [_session_row(e) for e in by_kind["session"]],
        ["site_id", "session_id"],
    )
    store.record_verifications(conn, [_verification_row(e) for e in by_kind["verification"]])
    store.upsert_customers(conn, [_customer_row(e) for e in by_kind["customer"]])
    rows = _conversion_rows(conn, by_kind["conversion"])
    store.insert_ignoring_duplicates(
        conn,
        store.conversions,
        [r for r in rows if r["status"] is None],
        ["site_id", "dedup_key"],
    )
    for row in rows:
        if row["status"] is not None:
            store.upsert_order(conn, row)


def _session_row(event: dict[str, Any]) -> dict[str, Any]:
    d = event["data"]
    return {
        "site_id": event["site"],
        "session_id": d["sessionId"],
        "visitor_id": d["visitorId"],
        "click_id": d.get("clickId") or None,
        "url": d.get("url"),
        "referrer": d.get("referrer") or None,
        "user_agent": d.get("userAgent"),
        "bot": bool(d.get("bot")),
        "created_at": event["receivedAt"],
    }


def _verification_row(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "site_id": event["site"],
        "session_id": event["data"]["sessionId"],
        "verified_at": event["receivedAt"],
    }


def _customer_row(event: dict[str, Any]) -> dict[str, Any]:
    d = event["data"]
    return {
        "site_id": event["site"],
        "external_id": d["externalId"],
        "name": d["name"],
        "email": d.get("email"),
        "avatar": d.get("avatar"),
        "click_id": d.get("clickId") or None,
        "created_at": event["receivedAt"],
    }


def _conversion_rows(conn: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for conversion events, attributed with one touches query per site."""
    by_site: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        d = event["data"]
        if not d.get("clickId") and d.get("clickFromCustomer"):
            d["clickId"] = store.customer_click(conn, event["site"], d["clickFromCustomer"])
        by_site.setdefault(event["site"], []).append(event)
    rows = []
    for site_id, site_events in by_site.items():
        window = store.site_settings(conn, site_id).attribution_window_days
        data = [e["data"] for e in site_events]
        candidates = touches(
            conn,
            site_id,
            start=min(window_start(d["occurredAt"], window) for d in data),
            end=max(d["occurredAt"] for d in data),
            visitors={d["visitorId"] for d in data if d.get("visitorId")},
            clicks={d["clickId"] for d in data if d.get("clickId")},
        )
        for event in site_events:
            d = event["data"]
            attribution = attribute_from(
                candidates,
                window,
                d["occurredAt"],
                d.get("visitorId"),
                d.get("sessionId"),
                d.get("clickId"),
            )
            rows.append(_conversion_row(event, attribution))
    return rows


def _conversion_row(event: dict[str, Any], attribution: dict[str, Any]) -> dict[str, Any]:
    d = event["data"]
    return {
        "site_id": event["site"],
        "dedup_key": d["dedupKey"],
        "kind": d["kind"],
        "source": d["source"],
        "name": d["name"],
        "visitor_id": d.get("visitorId"),
        "session_id": d.get("sessionId"),
        "click_id": d.get("clickId"),
        "customer_id": d.get("customerId"),
        "order_id": d.get("orderId"),
        "value": d.get("value"),
        "refunded": d.get("refunded") or 0,
        "currency": d.get("currency"),
        "status": d.get("status"),
        "state_version": d.get("stateVersion"),
        "details": _json(d.get("details")),
        "metadata": _json(d.get("metadata")),
        "fingerprint": _json(d.get("fingerprint")),
        "attribution": _json(attribution),
        "url": d.get("url"),
        "occurred_at": d["occurredAt"],
        "received_at": event["receivedAt"],
        "updated_at": event["receivedAt"],
    }


def _json(value: Any) -> str | None:
    return (
        json.dumps(value, separators=(",", ":"), allow_nan=False, default=json_default)
        if value
        else None
    )


_ROW_MAKERS = ("session", "verification", "customer", "conversion")


def _queue_name() -> str:
    return Config.from_env().queue_name


class DrainingWorker(Worker):
    """An RQ worker that also schedules a drain whenever events wait without one.

    That covers a drain job that died with its worker: its lease expires within
    ``RUNNING_LEASE_MS`` and the next kick of any live worker schedules a new one. RQ's
    own registry maintenance keeps its usual ten-minute period.
    """

    kick_interval_s = 5
    rq_maintenance_interval_s = 600

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", self.kick_interval_s)
        # The dequeue blocks for worker_ttl - 15 s; keep it short so kicks happen on time.
        kwargs.setdefault("worker_ttl", self.kick_interval_s + 15)
        kwargs.setdefault("job_monitoring_interval", self.kick_interval_s)
        super().__init__(*args, **kwargs)
        self._rq_maintained_at: datetime | None = None
        self._buffer = EventBuffer(self.connection, self.queues[0].name)

    def run_maintenance_tasks(self) -> None:
        """Kick a drain; run RQ's registry cleaning at its usual, slower pace."""
        try:
            self._buffer.kick()
        except Exception:  # a failed kick is retried at the next interval
            log.exception("drain kick failed")
        now = datetime.now(UTC)
        if (
            self._rq_maintained_at is None
            or (now - self._rq_maintained_at).total_seconds() > self.rq_maintenance_interval_s
        ):
            self._rq_maintained_at = now
            super().run_maintenance_tasks()
