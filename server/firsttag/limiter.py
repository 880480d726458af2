"""Rate limits kept in Redis, so they hold across web processes and machines.

Each limit is a bucket (``ip``, ``browser``, ``server`` or ``reads``) for one subject (a
client address or a site id) allowing ``per_minute`` requests. The algorithm is GCRA
(the generic cell rate algorithm): one Redis key per bucket holds the time at which the
bucket will be full again, so a bucket allows a burst of ``per_minute`` requests and then
one request every ``60 / per_minute`` seconds, with no burst at window boundaries.

All the limits of a request are checked by one Lua script, in one round trip: the request
is admitted only when every limit allows it, and only then do any counts move, so a
refused request spends nothing (a flooding client never eats its site's quota). The same
call returns what the ``RateLimit-*`` headers need, for the tightest limit.

When Redis cannot be reached the limiter fails *open*: writes fail anyway without Redis
(answered 503 by the buffer), and reads, which only need the database, stay available.

Pure: no Flask. :mod:`firsttag.web.ratelimit` spends these limits for a request and
answers 429 with the ``RateLimit-*`` headers.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PERIOD_MS = 60_000
KEY_PREFIX = "firsttag:rl:"

# KEYS: one per limit. ARGV: cost, then (limit, period in ms) per key.
# Returns {allowed 0/1, limit, remaining, reset ms, retry-after ms} of the tightest limit.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local refused, retry, refused_limit, refused_reset = false, -1, 0, 0
local best_limit, best_remaining, best_reset = 0, math.huge, 0
local tats = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local interval = period / limit
  local c = math.min(cost, limit)
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + c * interval
  if new_tat - period > now then
    refused = true
    if new_tat - period - now > retry then
      retry, refused_limit, refused_reset = new_tat - period - now, limit, tat - now
    end
  else
    tats[i] = new_tat
    local remaining = math.floor((period - (new_tat - now)) / interval)
    if remaining < best_remaining then
      best_limit, best_remaining, best_reset = limit, remaining, new_tat - now
    end
  end
end
if refused then
  return {0, refused_limit, 0, math.ceil(refused_reset), math.ceil(retry)}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', tats[i]),
             'PX', math.max(1, math.ceil(tats[i] - now)))
end
return {1, best_limit, best_remaining, math.ceil(best_reset), 0}
"""


@dataclass(frozen=True)
class Limit:
    """``per_minute`` requests of ``bucket`` for ``subject`` (a client address or site id)."""

    bucket: str
    subject: str
    per_minute: int


@dataclass(frozen=True)
class Verdict:
    """The answer for one request: admitted or not, and what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int


class RateLimiter:
    """Checks and spends the limits of a request with one atomic Redis script."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA)

    def hit(self, limits: Sequence[Limit], cost: int = 1) -> Verdict | None:
        """Spend ``cost`` from every limit if all allow it; None when Redis fails (open).

        A cost larger than a limit spends the whole limit, so a batch bigger than a
        site's quota per minute still goes through once the quota is full.
        """
        keys, args = script_input(limits, cost)
        try:
            reply = self._script(keys=keys, args=args)
        except RedisError as exc:
            log.warning("rate limiter unavailable, admitting the request: %s", exc)
            return None
        return verdict_of(reply)


#: The GCRA script, for a caller that runs it inside a larger script in the same atomic
#: step (the event buffer charges the limits and appends the event in one call).
GCRA_SCRIPT = _GCRA


def script_input(limits: Sequence[Limit], cost: int = 1) -> tuple[list[str], list[int]]:
    """The KEYS and ARGV of :data:`GCRA_SCRIPT` spending ``cost`` of each of ``limits``."""
    keys = [f"{KEY_PREFIX}{lim.bucket}:{lim.subject}" for lim in limits]
    args: list[int] = [max(1, cost)]
    for lim in limits:
        args += [lim.per_minute, PERIOD_MS]
    return keys, args


def verdict_of(reply: Sequence[int]) -> Verdict:
    """The :class:`Verdict` of :data:`GCRA_SCRIPT`'s reply (its first five values)."""
    allowed, limit, remaining, reset_ms, retry_ms = reply[:5]
    return Verdict(
        allowed=bool(allowed),
        limit=int(limit),
        remaining=max(0, int(remaining)),
        reset_s=math.ceil(int(reset_ms) / 1000),
        retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)),
    )


def client_subject(address: str | None) -> str:
    """The rate-limit subject of a client address.

    IPv6 clients are grouped by their /64, the block one subscriber usually gets: an
    address per request is free to pick inside it.
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
