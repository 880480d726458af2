"""Group commit: concurrent pushes of one process share Redis round trips, each its own answer."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from firsttag import wire
from firsttag.events.buffer import BUFFER_KEY, BacklogFull, EventBuffer
from firsttag.limiter import Limit
from redis import Redis


def _event(site: str, n: int, pad: int = 0) -> wire.Event:
    return wire.Event(
        site, "2026-01-01T00:00:00.000000Z", wire.Verification(f"s{n:07d}" + "x" * pad)
    )


def _concurrently(calls: list[Any]) -> list[Any]:
    """Run ``calls`` from as many threads, released together; each one's result or error."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_pushes_share_round_trips_and_each_is_stored_once(config: Any) -> None:
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    n = 64
    results = _concurrently([lambda i=i: buffer.push(_event("st_a", i)) for i in range(n)])
    assert results == [None] * n
    held = [wire.decode(raw) for raw in redis.lrange(BUFFER_KEY, 0, -1)]
    assert sorted(e.body.session_id for e in held) == [f"s{i:07d}" for i in range(n)]
    assert buffer.group.calls == n
    # Shared: fewer round trips than pushes (the threads were released together).
    assert 0 < buffer.group.round_trips < n


def test_a_refused_call_fails_alone_in_its_group(config: Any) -> None:
    """One site over its byte bound gets BacklogFull; the others in the same groups go in."""
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name, max_site_bytes=4_000)
    calls = [lambda i=i: buffer.push(_event("st_small", i)) for i in range(20)]
    calls.append(lambda: buffer.push(_event("st_big", 0, pad=5_000)))
    results = _concurrently(calls)
    assert results[:20] == [None] * 20
    assert isinstance(results[20], BacklogFull)
    assert redis.llen(BUFFER_KEY) == 20
    assert redis.hget("firsttag:backlog-bytes", "st_big") is None


def test_admit_charges_the_limits_and_queues_only_when_they_allow(config: Any) -> None:
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    limits = [Limit("ip", "203.0.113.1", 1_000), Limit("browser", "st_a", 3)]
    verdicts = [buffer.admit(limits, _event("st_a", i)) for i in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert verdicts[0].limit == 3 and verdicts[0].remaining == 2
    assert redis.llen(BUFFER_KEY) == 3  # refused events are not queued


def test_a_redis_that_forgot_its_scripts_is_reloaded(config: Any) -> None:
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    buffer.push(_event("st_a", 1))
    redis.script_flush()  # as after a Redis restart
    buffer.push(_event("st_a", 2))
    assert redis.llen(BUFFER_KEY) == 2


@pytest.mark.parametrize("bad_url", ["redis://127.0.0.1:1/0"])
def test_redis_down_fails_each_waiting_call(bad_url: str) -> None:
    from redis.exceptions import RedisError

    buffer = EventBuffer(Redis.from_url(bad_url, socket_connect_timeout=1), "q")
    results = _concurrently([lambda i=i: buffer.push(_event("st_a", i)) for i in range(4)])
    assert all(isinstance(r, RedisError) for r in results)


def test_a_script_error_fails_its_own_call_and_the_group_stays_in_step(config: Any) -> None:
    """An error reply answers only its call; every other call gets its own reply, in order."""
    from firsttag.events.group import GroupCommit
    from redis.exceptions import ResponseError

    redis = Redis.from_url(config.redis_url)
    redis.set("gc:text", "not a number")
    incr = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    group = GroupCommit(redis)
    calls = [lambda i=i: group.call(incr, [f"gc:n{i % 4}"], [i]) for i in range(40)]
    calls += [lambda: group.call(incr, ["gc:text"], [1]) for _ in range(3)]
    results = _concurrently(calls)
    assert all(isinstance(r, ResponseError) for r in results[40:])
    assert all(isinstance(r, int) for r in results[:40])
    for k in range(4):  # each counter saw exactly its own increments
        assert int(redis.get(f"gc:n{k}")) == sum(i for i in range(40) if i % 4 == k)
    # The connection was left in step: a later call reads its own reply.
    assert group.call(incr, ["gc:n0"], [0]) == sum(i for i in range(40) if i % 4 == 0)
    assert group.round_trips < len(calls)


def test_a_restarted_redis_connection_is_reconnected(config: Any) -> None:
    """A pooled connection closed by Redis (a restart, an idle timeout) is reconnected."""
    from firsttag.events.group import GroupCommit

    redis = Redis.from_url(config.redis_url)
    incr = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    group = GroupCommit(redis)
    assert group.call(incr, ["gc:r"], [1]) == 1
    redis.client_kill_filter(_type="normal", skipme=True)  # drops the committer's connection
    assert group.call(incr, ["gc:r"], [1]) == 2
