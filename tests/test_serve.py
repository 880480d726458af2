"""`firsttag serve`: its settings and restart policy (the restarts: e2e/test_restart.py)."""

from __future__ import annotations

import os
import socket
import stat

import pytest
from firsttag.config import Config
from firsttag.ops.supervisor import MAX_DELAY, STABLE_AFTER, Backoff, serve


def test_restart_delays_double_up_to_a_cap_and_start_over_after_a_stable_run():
    backoff = Backoff()
    delays = [backoff.delay(uptime=1.0) for _ in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY, MAX_DELAY]
    # A child that stayed up for a while is healthy: its next death restarts it quickly.
    assert backoff.delay(uptime=STABLE_AFTER) == 0.5
    assert backoff.delay(uptime=1.0) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("512mb", 512 * 1024**2), ("2gb", 2 * 1024**3), ("100000", 100_000), ("1G", 10**9)],
)
def test_redis_maxmemory_takes_redis_units(tmp_path, monkeypatch, raw, expected):
    monkeypatch.setenv("FIRSTTAG_REDIS_MAXMEMORY", raw)
    assert Config.from_env(tmp_path).redis_maxmemory == expected


@pytest.mark.parametrize("raw", ["lots", "0", "-1gb", "1tb"])
def test_a_bad_redis_maxmemory_is_refused_naming_the_variable(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("FIRSTTAG_REDIS_MAXMEMORY", raw)
    with pytest.raises(SystemExit, match="FIRSTTAG_REDIS_MAXMEMORY"):
        Config.from_env(tmp_path)


def test_redis_maxmemory_defaults_to_a_real_limit(tmp_path, monkeypatch):
    monkeypatch.delenv("FIRSTTAG_REDIS_MAXMEMORY", raising=False)
    assert 64 * 1024**2 <= Config.from_env(tmp_path).redis_maxmemory <= 1024**3


def test_the_data_dir_and_database_are_owner_only_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.delenv("FIRSTTAG_DATABASE_URL", raising=False)
    monkeypatch.delenv("FIRSTTAG_SECRET_KEY", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # as an older firsttag left it
    old = os.umask(0o022)
    try:
        config = Config.from_env(data)  # what `sites create` does before any `serve`
    finally:
        os.umask(old)
    assert config.database_url == f"sqlite:///{data / 'firsttag.db'}"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "firsttag.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600


def test_serve_refuses_a_taken_port_at_once(tmp_path):
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = Config(tmp_path, f"sqlite:///{tmp_path / 'db'}", None, "secret")
        assert serve(config, "127.0.0.1", port, echo=said.append) == 1
    assert said == [f"firsttag: 127.0.0.1:{port} is already in use; choose another --port"]
    assert not (tmp_path / "redis").exists()  # refused before starting anything
