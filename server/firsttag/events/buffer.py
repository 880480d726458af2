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

import random
import secrets
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue

from firsttag.events.group import GroupCommit
from firsttag.limiter import GCRA_SCRIPT, Limit, Verdict, script_input, verdict_of
from firsttag.wire import Event, encode

BUFFER_KEY = "firsttag:buffer"
LEASE_KEY = "firsttag:drain-lease"
# Bytes waiting in the buffer: a hash site ID → bytes, and the total over all sites. The
# push script adds to them and the drainer's trim subtracts, each in the same atomic step
# as the list operation, so they always describe what the list holds.
SITE_BYTES_KEY = "firsttag:backlog-bytes"
TOTAL_BYTES_KEY = "firsttag:backlog-bytes:total"

# How long Redis remembers an idempotency claim (see firsttag.admission); the store's
# unique keys hold it for ever.
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

# The browser endpoints' one call: charge the rate limits (the limiter's GCRA script,
# unchanged, as a function of its own KEYS and ARGV) and, only if every limit allows
# it, append the events (the push script, the same way), in one atomic step.
# KEYS: l limit keys, then the push's keys. ARGV: l, the limiter's 1 + 2l values, then
# the push's values. Returns the limiter's five values and the push's result (-2 when
# a limit refused and nothing was appended).
_ADMIT = (
    "local function gcra(KEYS, ARGV)\n"
    + GCRA_SCRIPT
    + "\nend\nlocal function push(KEYS, ARGV)\n"
    + _PUSH
    + """
end
local l = tonumber(ARGV[1])
local lk, la, pk, pa = {}, {}, {}, {}
for i = 1, l do lk[i] = KEYS[i] end
for i = l + 1, #KEYS do pk[#pk + 1] = KEYS[i] end
for i = 2, 2 + 2 * l do la[#la + 1] = ARGV[i] end
for i = 3 + 2 * l, #ARGV do pa[#pa + 1] = ARGV[i] end
local verdict = gcra(lk, la)
if verdict[1] == 0 then
  verdict[6] = -2
  return verdict
end
verdict[6] = push(pk, pa)
return verdict
"""
)

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
        self._admit = redis.register_script(_ADMIT)
        self._kick = redis.register_script(_KICK)
        #: Concurrent pushes of this process share one round trip (see events.group).
        self.group = GroupCommit(redis)

    def push(self, event: Event) -> None:
        """Append one event durably; raises ``redis.RedisError`` when Redis cannot take it."""
        self.push_many(event.site, [encode(event)])

    def push_many(
        self, site_id: str, events: list[str | bytes], claims: dict[str, str] | None = None
    ) -> None:
        """Append ``site_id``'s ``events`` and set ``claims`` atomically.

        Raises :class:`BacklogFull` past the event or byte bounds, ``redis.RedisError`` when
        Redis cannot take them (an out-of-memory Redis included).
        """
        token = secrets.token_hex(8)
        args = self._push_args(token, site_id, events, claims or {})
        self._after_push(self.group.call(self._push, args["keys"], args["args"]), token)

    def admit(self, limits: Sequence[Limit], event: Event) -> Verdict:
        """Charge ``limits`` and, if every one allows it, append ``event``: one atomic call.

        The browser endpoints' path: one Redis round trip (shared with the concurrent
        requests of the process) instead of one per limit and one for the event. Returns
        the limits' :class:`~firsttag.limiter.Verdict`; when it is not ``allowed``,
        nothing was spent and nothing appended. Raises :class:`BacklogFull` past the
        bounds (the limits are then spent, as a refused push always was) and
        ``redis.RedisError`` when Redis cannot take it.
        """
        # Only needs to be unique (it names who holds the drain lease), not secret:
        # random's generator makes it without the getrandom() system call, which
        # released the GIL once per beacon. (random is reseeded in a forked child.)
        token = f"{random.getrandbits(64):016x}"
        limit_keys, limit_args = script_input(limits)
        push = self._push_args(token, event.site, [encode(event)], {})
        reply = self.group.call(
            self._admit,
            [*limit_keys, *push["keys"]],
            [len(limit_keys), *limit_args, *push["args"]],
        )
        verdict = verdict_of(reply)
        if verdict.allowed:
            self._after_push(int(reply[5]), token)
        return verdict

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

    def push_in(
        self,
        pipe: Pipeline,
        site_id: str,
        events: list[str | bytes],
        claims: dict[str, str],
    ) -> str:
        """Queue the append of ``events`` with ``claims`` on ``pipe``, a MULTI pipeline.

        For a caller that WATCHes keys first (admission watches a claim): the append
        runs only if they did not change. Pass the script's result from
        ``pipe.execute()`` and the returned token to :meth:`settle`.
        """
        token = secrets.token_hex(8)
        self._push(**self._push_args(token, site_id, events, claims), client=pipe)
        return token

    def settle(self, result: int, token: str) -> None:
        """Finish an append queued by :meth:`push_in`: refuse it (429) or schedule a drain."""
        self._after_push(result, token)

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
