"""The door of the pipeline: hand a validated event to Redis in one round trip.

Events are appended to one Redis list, the *buffer*. RQ jobs drain the buffer in batches
(:mod:`server.pipeline`); enqueuing one job per event would cap throughput at what RQ can
schedule (about 230 jobs/s here), far below what the HTTP layer accepts.

A *drain lease* key says that a drain job is scheduled or running. The same Lua script
that appends an event also claims the lease when it is free, so exactly one request in a
burst enqueues a job, and no event can be appended without a drain being due: either the
lease was free (this request schedules one) or a drainer holds it (and drains until it
sees the buffer empty, atomically releasing the lease then).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue

from .bounds import json_default  # one definition for the door and the worker

BUFFER_KEY = "firsttag:buffer"
LEASE_KEY = "firsttag:drain-lease"
DEAD_LETTER_KEY = "firsttag:dead-letter"
CLAIM_PREFIX = "firsttag:claim:"

# How long Redis remembers an idempotency key; the store's unique keys hold it for ever.
CLAIM_TTL_S = 7 * 24 * 3600

# A scheduled job must start within this time or another request may schedule a new
# one; a running drainer renews the lease with the much shorter RUNNING_LEASE_MS.
SCHEDULED_LEASE_S = 60
DRAIN_JOB_TIMEOUT_S = 600

# KEYS: buffer, lease, claim keys…   ARGV: token, lease ttl, max backlog, claim ttl,
# number of claims n, n claim values, then the events. Everything or nothing: a claim
# is only ever written together with the events it stands for.
_PUSH = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
local n = tonumber(ARGV[5])
for i = 1, n do redis.call('SET', KEYS[2 + i], ARGV[5 + i], 'EX', ARGV[4]) end
for i = 6 + n, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
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

    def __init__(self, redis: Redis, queue_name: str, max_backlog: int = 2_000_000) -> None:
        # Past max_backlog waiting events, writes answer 429 instead of growing Redis
        # without bound.
        self.max_backlog = max_backlog
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis)
        self._push = redis.register_script(_PUSH)
        self._kick = redis.register_script(_KICK)

    def push(self, kind: str, site_id: str, received_at: str, data: dict[str, Any]) -> None:
        """Append one event durably; raises ``redis.RedisError`` when Redis cannot take it."""
        self.push_many([encode(kind, site_id, received_at, data)])

    def push_many(self, events: list[str], claims: dict[str, str] | None = None) -> None:
        """Append ``events`` and set ``claims`` atomically; BacklogFull past max_backlog."""
        token = secrets.token_hex(8)
        self._after_push(
            self._push(**_push_args(token, events, claims or {}, self.max_backlog)), token
        )

    def _after_push(self, result: int, token: str) -> None:
        if result == -1:
            raise BacklogFull()
        if result == 1:
            self._enqueue(token)

    def push_claimed(
        self,
        claim_key: str,
        decide: Callable[[dict[str, Any] | None], tuple[Any, dict[str, Any] | None]],
        events: list[str],
        extra_claims: dict[str, str] | None = None,
    ) -> Any:
        """Push ``events`` under an idempotency claim, judged by ``decide``.

        ``decide`` gets what Redis remembers of the key (or None) and returns a decision
        and the claim to store, or None for the claim when nothing is to be pushed (a
        duplicate, a conflict). The claim is WATCHed, so two requests racing with the same
        key are judged one after the other; nothing is claimed unless the events are
        appended in the same atomic step.
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
                    token = secrets.token_hex(8)
                    pipe.multi()
                    self._push(**_push_args(token, events, claims, self.max_backlog), client=pipe)
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
            "server.pipeline.drain",
            token,
            job_timeout=DRAIN_JOB_TIMEOUT_S,
            result_ttl=0,
            failure_ttl=24 * 3600,
        )

    def pending(self) -> int:
        """Events waiting in the buffer."""
        return int(self.redis.llen(BUFFER_KEY))


class BacklogFull(Exception):
    """Too many events wait in Redis: the client should retry later (429)."""


def _push_args(
    token: str, events: list[str], claims: dict[str, str], max_backlog: int
) -> dict[str, list[Any]]:
    return {
        "keys": [BUFFER_KEY, LEASE_KEY, *claims],
        "args": [
            token,
            SCHEDULED_LEASE_S,
            max_backlog,
            CLAIM_TTL_S,
            len(claims),
            *claims.values(),
            *events,
        ],
    }


def encode(kind: str, site_id: str, received_at: str, data: dict[str, Any]) -> str:
    """The buffer's representation of one event."""
    return json.dumps(
        {"kind": kind, "site": site_id, "receivedAt": received_at, "data": data},
        separators=(",", ":"),
        allow_nan=False,
        default=json_default,
    )
