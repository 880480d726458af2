"""The worker side: drain the Redis buffer into the SQL store, exactly once.

A drain job holds the drain lease (see :mod:`firsttag.events.buffer`) and repeats:

1. read the oldest ``batch_size`` events (``LRANGE``, nothing removed yet);
2. decode them (:mod:`firsttag.wire`), write their rows in one transaction of
   idempotent inserts (:mod:`firsttag.events.rows`) and COMMIT;
3. remove them from the buffer (``LTRIM``), but only while it still holds the lease.

Once it has caught up (a batch smaller than ``batch_size``), the drainer lingers
(``FIRSTTAG_DRAIN_LINGER_MS``) before reading again, so that under a steady stream of
events each transaction, trim and log line serves hundreds of events instead of a
handful: under beacon load the worker's CPU per event was three times its CPU draining a
backlog. It also keeps its lease across short quiet spells, and releases it only after
:data:`IDLE_LINGERS` empty reads in a row, because each release makes the next event
schedule a new RQ job.

A worker killed between 2 and 3 leaves the batch in Redis; the next drainer writes it
again and the unique keys turn every row into a no-op. A drainer that stalled past its
lease cannot trim: another drainer owns the head of the list by then.

No event can block another. When a batch fails because of its events (a value the
worker's parsing refuses, a row the database refuses, anything else one event raises),
the batch is split in halves until the events at fault are alone; those become dead
letters (:mod:`firsttag.events.deadletters`), recorded in the same atomic step as the trim, and
the rest is stored. Only a fault of the database itself (down, locked, read-only, full)
makes the batch wait, with a capped exponential backoff inside the drain while the lease
is kept alive, and then retries it as it was.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from redis import Redis
from rq import SimpleWorker, get_current_job
from rq.timeouts import BaseTimeoutException
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from firsttag import metrics, store
from firsttag.config import Config
from firsttag.events import deadletters
from firsttag.events.buffer import (
    BUFFER_KEY,
    LEASE_KEY,
    SITE_BYTES_KEY,
    TOTAL_BYTES_KEY,
    EventBuffer,
)
from firsttag.events.readiness import beat, store_writable
from firsttag.events.rows import write
from firsttag.wire import Event, UnknownKind, WireError, envelope, from_json, parse

log = logging.getLogger(__name__)

RUNNING_LEASE_MS = 10_000
#: Empty reads, one linger apart, before a lingering drainer lets go of the lease.
IDLE_LINGERS = 10
#: The warm-shutdown flag of the worker running the current drain job (set by
#: DrainingWorker around each job it runs in its own thread), so that a lingering drain
#: hands over at a stop request instead of holding the worker until the stream pauses.
_worker_stopping: ContextVar[threading.Event | None] = ContextVar("worker_stopping", default=None)
MAX_JOB_SECONDS = 300
# Waiting for the database: 0.5 s, 1 s, 2 s, … never more than 30 s between tries.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0

# SQLite result codes (low byte) that are the database's state, not an event's fault:
# BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
_SQLITE_DATABASE_CODES = {5, 6, 8, 10, 13, 14}
# PostgreSQL SQLSTATE classes that are the server's state: connection exception,
# transaction rollback (serialisation, deadlock: retry), insufficient resources (disk
# full, out of memory, too many connections), operator intervention, system error.
_POSTGRES_DATABASE_CLASSES = {"08", "40", "53", "57", "58"}
_POSTGRES_READ_ONLY = "25006"

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS: buffer, lease, site bytes, total bytes, dead letters, claim keys…
# ARGV: token, events to trim, lease ms, number of sites s, s × (site, bytes), number of
# dead letters d, d × (reason, error, failedAt, site, kind, event, claims c, c values).
# One atomic step: dead letters are recorded exactly once, their claims are deleted while
# they still hold the value this event set, and the byte counters follow the list. The
# stream keeps about the newest 100,000 letters (deadletters.MAX_LETTERS): poison that got
# past the door must not fill Redis, whose noeviction would then refuse every site's events.
_TRIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local i = 5
local freed = 0
for _ = 1, tonumber(ARGV[4]) do
  local size = tonumber(ARGV[i + 1])
  if redis.call('HINCRBY', KEYS[3], ARGV[i], -size) <= 0 then
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
  freed = freed + size
  i = i + 2
end
if freed > 0 and redis.call('DECRBY', KEYS[4], freed) <= 0 then redis.call('DEL', KEYS[4]) end
local d = tonumber(ARGV[i])
i = i + 1
local k = 6
for _ = 1, d do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 'MAX_LETTERS', '*',
    'reason', ARGV[i], 'error', ARGV[i + 1], 'failedAt', ARGV[i + 2], 'site', ARGV[i + 3],
    'kind', ARGV[i + 4], 'event', ARGV[i + 5])
  local c = tonumber(ARGV[i + 6])
  i = i + 7
  for _ = 1, c do
    if redis.call('GET', KEYS[k]) == ARGV[i] then redis.call('DEL', KEYS[k]) end
    k = k + 1
    i = i + 1
  end
end
redis.call('LTRIM', KEYS[1], ARGV[2], -1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('LLEN', KEYS[1])
""".replace("MAX_LETTERS", str(deadletters.MAX_LETTERS))

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
    # One pool per process and URL, kept across the jobs of a worker.
    return store.connect(database_url)


def drain(token: str) -> int:
    """RQ job: drain the buffer while holding the lease ``token``. Returns events handled."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("drain() runs as an RQ job")
    config = Config.from_env()
    drainer = Drainer(
        job.connection,
        _engine(config.database_url),
        config.batch_size,
        linger_s=config.drain_linger_ms / 1000,
        stopping=_worker_stopping.get(),
    )
    return drainer.run(token)


@dataclass
class Failure:
    """An event that cannot be stored, on its way to the dead letters."""

    raw: bytes
    reason: str
    error: str
    site: str = ""
    kind: str = ""
    claims: dict[str, str] = field(default_factory=dict)


class StoreUnavailable(Exception):
    """The database stayed unavailable and the drain had to stop waiting (lease, deadline)."""


class Drainer:
    """Moves events from the Redis buffer to the store in batches.

    ``linger_s`` is how long to wait before the next read once caught up (see the
    module); 0 reads again at once and lets go of the lease at the first empty read.
    Once ``stopping`` is set (the worker's warm shutdown), the drain hands over after the
    batch in hand, as at its deadline.
    """

    def __init__(
        self,
        redis: Redis,
        engine: Engine,
        batch_size: int,
        linger_s: float = 0.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.stopping = stopping or threading.Event()
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._trim = redis.register_script(_TRIM)
        self._release_if_empty = redis.register_script(_RELEASE_IF_EMPTY)
        self._release = redis.register_script(_RELEASE)

    def run(self, token: str, max_seconds: float = MAX_JOB_SECONDS) -> int:
        """Drain until the buffer is empty, the lease is lost or ``max_seconds`` pass."""
        if not self._acquire(keys=[LEASE_KEY], args=[token, RUNNING_LEASE_MS]):
            return 0  # another drainer holds the lease and will empty the buffer
        keeper = _LeaseKeeper(self.redis, self._renew, token)
        keeper.start()
        try:
            return self._drain(token, keeper, time.monotonic() + max_seconds)
        finally:
            keeper.stop()

    def _drain(self, token: str, keeper: _LeaseKeeper, deadline: float) -> int:
        written = 0

        def go_on() -> bool:
            return (
                not keeper.lost.is_set()
                and not self.stopping.is_set()
                and time.monotonic() < deadline
            )

        empty_reads = 0
        while True:
            if keeper.lost.is_set():  # e.g. during a linger: the buffer is another's now
                log.warning("drain lease lost; leaving the buffer to its new holder")
                return written
            raw = self.redis.lrange(BUFFER_KEY, 0, self.batch_size - 1)
            if not raw:
                empty_reads += 1
                if self.linger_s and empty_reads < IDLE_LINGERS and go_on():
                    keeper.lost.wait(self.linger_s)
                    continue
                released = self._release_if_empty(keys=[BUFFER_KEY, LEASE_KEY], args=[token])
                if released != 0:
                    return written
                continue  # events arrived between LRANGE and the release
            empty_reads = 0
            started = time.monotonic()
            try:
                failures = self.write_batch(raw, go_on)
            except StoreUnavailable:
                failures = None
            if failures is not None:
                left = self._trim(**_trim_args(token, raw, failures))
                if left < 0:
                    log.warning("drain lease lost; leaving the buffer to its new holder")
                    return written
                written += len(raw)
                _report(len(raw), len(failures), time.monotonic() - started, left)
            if keeper.lost.is_set():
                log.warning("drain lease lost while waiting for the store")
                return written
            if failures is None or not go_on():
                # Hand over to a fresh job so no job runs into RQ's timeout, and no
                # stopping worker waits for the stream to pause.
                self._release(keys=[LEASE_KEY], args=[token])
                EventBuffer(self.redis, _queue_name()).kick()
                return written
            if self.linger_s and len(raw) < self.batch_size:
                keeper.lost.wait(self.linger_s)  # caught up: let the next batch gather

    def write_batch(self, raw: list[bytes], go_on: Any = None) -> list[Failure]:
        """Store what can be stored of ``raw``; return the events that cannot be.

        A batch that stores cleanly is one transaction. A batch that fails because of its
        events is bisected until the faulty events are alone; each of those is returned
        as a :class:`Failure` and everything else is committed. While the database itself
        fails, the batch waits with a capped exponential backoff and is retried as long
        as ``go_on()`` says so (always, when None); then :class:`StoreUnavailable` is
        raised and nothing of the batch has been lost (it is still in the buffer).
        """
        # A batch allocates tens of thousands of short-lived objects, none in cycles worth
        # chasing while it runs: the cyclic collector's passes over them were a fifth of
        # the drain's CPU (bench/profile_drain.py: 38 -> 30 us per event). It runs again
        # between batches; a batch's memory is bounded by FIRSTTAG_BATCH_SIZE.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._write_batch(raw, go_on)
        finally:
            if collecting:
                gc.enable()

    def _write_batch(self, raw: list[bytes], go_on: Any) -> list[Failure]:
        failures: list[Failure] = []
        events: list[tuple[bytes, Event]] = []
        for item in raw:
            event, failure = _decode(item)
            if failure is not None:
                failures.append(failure)
            else:
                events.append((item, event))
        chunks = [events] if events else []
        attempt = 0
        while chunks:
            chunk = chunks.pop(0)
            try:
                with self.engine.begin() as conn:
                    write(conn, [event for _, event in chunk])
                attempt = 0
            except BaseTimeoutException:
                raise  # RQ's job timeout: not this event's fault
            except Exception as exc:
                if self._database_fault(exc):
                    self._wait(exc, attempt, go_on)
                    attempt += 1
                    chunks.insert(0, chunk)
                elif len(chunk) == 1:
                    failures.append(_failure(*chunk[0], exc))
                else:
                    middle = len(chunk) // 2
                    chunks[0:0] = [chunk[:middle], chunk[middle:]]
        for failure in failures:
            log.error(
                "dead-lettered a %s event of site %s: %s (%s)",
                failure.kind or "?",
                failure.site or "?",
                failure.reason,
                failure.error,
            )
        return failures

    def _database_fault(self, exc: Exception) -> bool:
        """Whether ``exc`` says the database cannot write now, whatever the events."""
        if isinstance(exc, (DisconnectionError, PoolTimeoutError)):
            return True
        if not isinstance(exc, DBAPIError):
            return False  # a Python error of the worker's own parsing: the event's fault
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_DATABASE_CODES
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate:
            return sqlstate[:2] in _POSTGRES_DATABASE_CLASSES or sqlstate == _POSTGRES_READ_ONLY
        # A driver without codes: ask the database whether it takes a write at all.
        return isinstance(exc, (OperationalError, InterfaceError)) and (
            store_writable(self.engine) is not None
        )

    def _wait(self, exc: Exception, attempt: int, go_on: Any) -> None:
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
        log.warning("store unavailable (%s); batch waits %.1f s", deadletters.describe(exc), delay)
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            if go_on is not None and not go_on():
                raise StoreUnavailable(deadletters.describe(exc))
            time.sleep(min(left, 0.5))
        if go_on is not None and not go_on():
            raise StoreUnavailable(deadletters.describe(exc))


class _LeaseKeeper(threading.Thread):
    """Renews the drain lease and the worker heartbeat while a drain runs.

    A write may block for longer than the lease (SQLite waits for a lock, a big batch on
    a slow disk); renewing from a thread keeps the lease for as long as this process is
    alive, and a process that dies or freezes still loses it within ``RUNNING_LEASE_MS``.
    """

    def __init__(self, redis: Redis, renew: Any, token: str) -> None:
        super().__init__(name="drain-lease", daemon=True)
        self.redis = redis
        self.renew = renew
        self.token = token
        self.lost = threading.Event()
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(RUNNING_LEASE_MS / 4000):
            try:
                beat(self.redis)
                if not self.renew(keys=[LEASE_KEY], args=[self.token, RUNNING_LEASE_MS]):
                    self.lost.set()
                    return
            except Exception:  # Redis unreachable: try again, the lease may still hold
                log.exception("drain lease renewal failed")

    def stop(self) -> None:
        """Stop renewing (the lease itself is released or trimmed by the drainer)."""
        self._stopped.set()
        self.join()


def _decode(item: bytes) -> tuple[Event, None] | tuple[None, Failure]:
    try:
        parsed = parse(item)
    except Exception as exc:  # not JSON, not UTF-8, or too deep (RecursionError)
        site = envelope(item)[0] or ""
        return None, Failure(item, deadletters.UNDECODABLE, deadletters.describe(exc), site)
    try:
        return from_json(parsed), None
    except UnknownKind as exc:
        return None, Failure(item, deadletters.NOT_AN_EVENT, str(exc), envelope(item)[0] or "")
    except WireError as exc:  # a known kind without a field its version requires
        return None, Failure(
            item,
            deadletters.INVALID_EVENT,
            deadletters.describe(exc),
            str(parsed.get("site") or ""),
            str(parsed.get("kind") or ""),
            _claims_of(parsed),
        )


def _claims_of(parsed: dict[str, Any]) -> dict[str, str]:
    claims = parsed.get("claims")
    claims = claims if isinstance(claims, dict) else {}
    return {k: v for k, v in claims.items() if isinstance(k, str) and isinstance(v, str)}


def _failure(item: bytes, event: Event, exc: Exception) -> Failure:
    reason = (
        deadletters.REFUSED_BY_DATABASE
        if isinstance(exc, DBAPIError)
        else deadletters.INVALID_EVENT
    )
    return Failure(
        item, reason, deadletters.describe(exc), event.site, event.kind, dict(event.claims)
    )


def _trim_args(token: str, raw: list[bytes], failures: list[Failure]) -> dict[str, list[Any]]:
    sizes: dict[str, int] = {}
    for item in raw:
        site, _ = envelope(item)
        if site is not None:
            sizes[site] = sizes.get(site, 0) + len(item)
    args: list[Any] = [token, len(raw), RUNNING_LEASE_MS, len(sizes)]
    for site, size in sizes.items():
        args += [site, size]
    args.append(len(failures))
    claim_keys: list[str] = []
    failed_at = store.utcnow()
    for f in failures:
        args += [f.reason, f.error, failed_at, f.site, f.kind, f.raw, len(f.claims)]
        claim_keys += f.claims.keys()
        args += f.claims.values()
    keys = [BUFFER_KEY, LEASE_KEY, SITE_BYTES_KEY, TOTAL_BYTES_KEY, deadletters.DEAD_LETTER_KEY]
    return {"keys": keys + claim_keys, "args": args}


def _report(events: int, failed: int, seconds: float, left: int) -> None:
    # One JSON log line and the metrics per committed batch (firsttag.logs, firsttag.metrics).
    metrics.record_batch(events, failed, seconds)
    log.info(
        "drain batch",
        extra={
            "fields": {
                "events": events,
                "deadLettered": failed,
                "durationMs": round(seconds * 1000, 3),
                "backlog": left,
            }
        },
    )


def _queue_name() -> str:
    return Config.from_env().queue_name


class DrainingWorker(SimpleWorker):
    """An RQ worker that also schedules a drain whenever events wait without one.

    It runs each drain job in its own process (RQ's ``SimpleWorker``) instead of forking
    a work-horse per job: the fork, a fresh import state and a fresh database pool per
    burst cost more than a short drain itself. Crash safety does not rest on the fork:
    a killed worker leaves its batch in Redis and its lease to expire (see the module).

    That covers a drain job that died with its worker: its lease expires within
    ``RUNNING_LEASE_MS`` and the next kick of any live worker schedules a new one. RQ's
    own registry maintenance keeps its usual ten-minute period.
    """

    kick_interval_s = 5
    rq_maintenance_interval_s = 600

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stopping = threading.Event()
        kwargs.setdefault("maintenance_interval", self.kick_interval_s)
        # The dequeue blocks for worker_ttl - 15 s; keep it short so kicks happen on time.
        kwargs.setdefault("worker_ttl", self.kick_interval_s + 15)
        kwargs.setdefault("job_monitoring_interval", self.kick_interval_s)
        super().__init__(*args, **kwargs)
        self._rq_maintained_at: datetime | None = None
        self._buffer = EventBuffer(self.connection, self.queues[0].name)

    def execute_job(self, job: Any, queue: Any) -> Any:
        """Run ``job`` here (no fork), with this worker's stop flag visible to the drain."""
        reset = _worker_stopping.set(self._stopping)
        try:
            return super().execute_job(job, queue)
        finally:
            _worker_stopping.reset(reset)

    def handle_warm_shutdown_request(self) -> None:
        """SIGTERM/SIGINT: a running drain hands over after its batch; then RQ stops."""
        self._stopping.set()
        super().handle_warm_shutdown_request()

    def run_maintenance_tasks(self) -> None:
        """Beat, kick a drain; run RQ's registry cleaning at its usual, slower pace."""
        try:
            beat(self.connection)
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
