"""The door of the pipeline: hand a validated event to Redis in one round trip.

Events are appended to one Redis list, the *buffer*. RQ jobs drain the buffer in batches
(:mod:`firsttag.events.drain`); enqueuing one job per event would cap throughput at what RQ can
schedule (about 230 jobs/s here), far below what the HTTP layer accepts.

A *drain lease* key says that a drain job is scheduled or running. The same Lua script
that appends an event also claims the lease when it is free, so exactly one request in a
burst enqueues a job, and no event can be appended without a drain being due: either the
lease was free (this request schedules one) or a drainer holds it (and drains until it
sees the buffer empty, atomically releasing the lease then).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue

from firsttag.bounds import json_default  # one definition for the door and the worker

BUFFER_KEY = "firsttag:buffer"
LEASE_KEY = "firsttag:drain-lease"
CLAIM_PREFIX = "firsttag:claim:"
# Bytes waiting in the buffer: a hash site ID → bytes, and the total over all sites. The
# push script adds to them and the drainer's trim subtracts, each in the same atomic step
# as the list operation, so they always describe what the list holds.
SITE_BYTES_KEY = "firsttag:backlog-bytes"
TOTAL_BYTES_KEY = "firsttag:backlog-bytes:total"

# How long Redis remembers an idempotency key; the store's unique keys hold it for ever.
CLAIM_TTL_S = 7 * 24 * 3600

# A scheduled job must start within this time or another request may schedule a new
# one; a running drainer renews the lease with the much shorter RUNNING_LEASE_MS. Short,
# because the lease outlives a job lost with its worker or with a killed Redis (it is in
# the append-only file), and no drain starts until it expires; a second scheduled job is
# harmless (it finds the lease taken and returns).
SCHEDULED_LEASE_S = 10
DRAIN_JOB_TIMEOUT_S = 600

# KEYS: buffer, lease, site bytes, total bytes, claim keys…
# ARGV: token, lease ttl, max backlog, claim ttl, site, max site bytes, max total bytes,
# number of claims n, n claim values, then the events. Everything or nothing: a claim is
# only ever written together with the events it stands for, and a site over its byte
# bound is refused (-1) before anything is written.
_PUSH = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
local n = tonumber(ARGV[8])
local size = 0
for i = 9 + n, #ARGV do size = size + #ARGV[i] end
local site_bytes = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
if site_bytes + size > tonumber(ARGV[6]) then return -1 end
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
if total + size > tonumber(ARGV[7]) then return -1 end
for i = 1, n do redis.call('SET', KEYS[4 + i], ARGV[8 + i], 'EX', ARGV[4]) end
for i = 9 + n, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HINCRBY', KEYS[3], ARGV[5], size)
redis.call('INCRBY', KEYS[4], size)
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""

_KICK = """
if redis.call('LLEN', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


class EventBuffer:
    """Appends events to the Redis buffer and schedules drain jobs on an RQ queue."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str,
        max_backlog: int = 2_000_000,
        max_site_bytes: int = 64 * 1024 * 1024,
        max_total_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        # Past max_backlog waiting events, or past a byte bound (per site, so one site's
        # flood does not refuse the others; and in total), writes answer 429 instead of
        # growing Redis without bound.
        self.max_backlog = max_backlog
        self.max_site_bytes = max_site_bytes
        self.max_total_bytes = max_total_bytes
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis)
        self._push = redis.register_script(_PUSH)
        self._kick = redis.register_script(_KICK)

    def push(self, kind: str, site_id: str, received_at: str, data: dict[str, Any]) -> None:
        """Append one event durably; raises ``redis.RedisError`` when Redis cannot take it."""
        self.push_many(site_id, [encode(kind, site_id, received_at, data)])

    def push_many(
        self, site_id: str, events: list[str | bytes], claims: dict[str, str] | None = None
    ) -> None:
        """Append ``site_id``'s ``events`` and set ``claims`` atomically.

        Raises :class:`BacklogFull` past the event or byte bounds, ``redis.RedisError`` when
        Redis cannot take them (an out-of-memory Redis included).
        """
        token = secrets.token_hex(8)
        self._after_push(self._push(**self._push_args(token, site_id, events, claims or {})), token)

    def _push_args(
        self, token: str, site_id: str, events: list[str | bytes], claims: dict[str, str]
    ) -> dict[str, list[Any]]:
        return {
            "keys": [BUFFER_KEY, LEASE_KEY, SITE_BYTES_KEY, TOTAL_BYTES_KEY, *claims],
            "args": [
                token,
                SCHEDULED_LEASE_S,
                self.max_backlog,
                CLAIM_TTL_S,
                site_id,
                self.max_site_bytes,
                self.max_total_bytes,
                len(claims),
                *claims.values(),
                *events,
            ],
        }

    def _after_push(self, result: int, token: str) -> None:
        if result == -1:
            raise BacklogFull()
        if result == 1:
            self._enqueue(token)

    def push_claimed(
        self,
        site_id: str,
        claim_key: str,
        decide: Callable[[dict[str, Any] | None], tuple[Any, dict[str, Any] | None]],
        events: list[str],
        extra_claims: dict[str, str] | None = None,
    ) -> Any:
        """Push ``site_id``'s ``events`` under an idempotency claim, judged by ``decide``.

        ``decide`` gets what Redis remembers of the key (or None) and returns a decision
        and the claim to store, or None for the claim when nothing is to be pushed (a
        duplicate, a conflict). The claim is WATCHed, so two requests racing with the same
        key are judged one after the other; nothing is claimed unless the events are
        appended in the same atomic step. Each event carries the claims it was pushed
        with, so a worker that cannot store it can take them back (see
        :func:`with_claims`).
        """
        key = CLAIM_PREFIX + claim_key
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    decision, claim = decide(json.loads(raw) if raw else None)
                    if claim is None:
                        pipe.reset()
                        return decision
                    claims = {key: json.dumps(claim, separators=(",", ":"))}
                    claims.update({CLAIM_PREFIX + k: v for k, v in (extra_claims or {}).items()})
                    claimed = [with_claims(e, claims) for e in events]
                    token = secrets.token_hex(8)
                    pipe.multi()
                    self._push(**self._push_args(token, site_id, claimed, claims), client=pipe)
                    (result,) = pipe.execute()
                    break
                except WatchError:
                    continue
        self._after_push(result, token)
        return decision

    def claim(self, claim_key: str) -> dict[str, Any] | None:
        """What Redis remembers of ``claim_key``, read without claiming anything."""
        raw = self.redis.get(CLAIM_PREFIX + claim_key)
        return json.loads(raw) if raw else None

    def kick(self) -> bool:
        """Schedule a drain if events are waiting and no drain holds the lease."""
        token = secrets.token_hex(8)
        if self._kick(keys=[BUFFER_KEY, LEASE_KEY], args=[token, SCHEDULED_LEASE_S]):
            self._enqueue(token)
            return True
        return False

    def _enqueue(self, token: str) -> None:
        # If this fails the event is still safe in the buffer; the lease expires and the
        # next request or a worker's periodic kick schedules a drain.
        self.queue.enqueue(
            "firsttag.events.drain.drain",
            token,
            job_timeout=DRAIN_JOB_TIMEOUT_S,
            result_ttl=0,
            failure_ttl=24 * 3600,
        )

    def pending(self) -> int:
        """Events waiting in the buffer."""
        return int(self.redis.llen(BUFFER_KEY))

    def pending_bytes(self) -> int:
        """Bytes waiting in the buffer, all sites together."""
        return int(self.redis.get(TOTAL_BYTES_KEY) or 0)


class BacklogFull(Exception):
    """Too many events or bytes wait in Redis: the client should retry later (429)."""


def encode(kind: str, site_id: str, received_at: str, data: dict[str, Any]) -> str:
    """The buffer's representation of one event.

    The envelope's first three fields are always ``kind``, ``site`` and ``receivedAt`` in
    this order, so :func:`envelope` can read them from an event too broken to parse.
    """
    return json.dumps(
        {"kind": kind, "site": site_id, "receivedAt": received_at, "data": data},
        separators=(",", ":"),
        allow_nan=False,
        default=json_default,
    )


def with_claims(event: str, claims: dict[str, str]) -> str:
    """``event`` carrying the claim keys and values pushed with it.

    The optional ``claims`` field is what lets a worker that dead-letters the event delete
    exactly those claims (only while they still hold these values), so a retry of the same
    request is admitted again. Events without it, from older versions, stay readable.
    """
    decoded = json.loads(event)
    decoded["claims"] = claims
    return json.dumps(decoded, separators=(",", ":"))


_ENVELOPE = re.compile(rb'^\{"kind":"[^"\\]*","site":"([^"\\]*)","receivedAt":"([^"\\]*)"')


def envelope(raw: bytes) -> tuple[str | None, str | None]:
    """The site ID and receipt time of a buffered event, without parsing its body.

    Read from the fixed prefix :func:`encode` writes, so it works for an event whose body
    ``json.loads`` refuses (too deep, truncated); (None, None) for anything else.
    """
    match = _ENVELOPE.match(raw)
    if match is None:
        return None, None
    return match.group(1).decode(), match.group(2).decode()
