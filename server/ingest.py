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
from typing import Any

from redis import Redis
from rq import Queue

BUFFER_KEY = "firsttag:buffer"
LEASE_KEY = "firsttag:drain-lease"
DEAD_LETTER_KEY = "firsttag:dead-letter"

# A scheduled job must start within this time or another request may schedule a new
# one; a running drainer renews the lease with the much shorter RUNNING_LEASE_MS.
SCHEDULED_LEASE_S = 60
DRAIN_JOB_TIMEOUT_S = 600

_PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
return 0
"""

_KICK = """
if redis.call('LLEN', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


class EventBuffer:
    """Appends events to the Redis buffer and schedules drain jobs on an RQ queue."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis)
        self._push = redis.register_script(_PUSH)
        self._kick = redis.register_script(_KICK)

    def push(self, kind: str, site_id: str, received_at: str, data: dict[str, Any]) -> None:
        """Append one event durably; raises ``redis.RedisError`` when Redis cannot take it."""
        event = json.dumps(
            {"kind": kind, "site": site_id, "receivedAt": received_at, "data": data},
            separators=(",", ":"),
        )
        token = secrets.token_hex(8)
        if self._push(keys=[BUFFER_KEY, LEASE_KEY], args=[event, token, SCHEDULED_LEASE_S]):
            self._enqueue(token)

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
