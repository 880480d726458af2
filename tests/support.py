"""Helpers for tests: polling with a deadline and a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firsttag.config import Config
from redis import Redis


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def config_env(config: Config) -> dict[str, str]:
    """Environment variables that make a child process use ``config``."""
    env = dict(os.environ)
    env.update(
        FIRSTTAG_DATA_DIR=str(config.data_dir),
        FIRSTTAG_DATABASE_URL=config.database_url,
        FIRSTTAG_REDIS_URL=config.redis_url or "",
        FIRSTTAG_SECRET_KEY=config.secret_key,
    )
    return env


class WorkerProcess:
    """A real ``firsttag worker`` process (an RQ worker) in its own process group."""

    def __init__(self, config: Config, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the worker and wait until RQ has registered it in Redis."""
        redis = Redis.from_url(self.config.redis_url or "")
        before = set(redis.smembers("rq:workers"))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "firsttag.ops.cli", "worker"],
                env=config_env(self.config),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: set(redis.smembers("rq:workers")) - before, 20, "the RQ worker")

    def kill(self) -> None:
        """SIGKILL the worker and any work-horse it forked: a crash, not a shutdown."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), as ``firsttag serve`` does."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A real ``firsttag serve`` or ``firsttag web`` (granian) on 127.0.0.1, own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "firsttag.ops.cli", *argv, "--port", str(self.port)]
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until ``/healthz`` answers 200."""
        import requests

        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(healthy, 60, f"{self.argv[3]} on {self.url}")

    def stop(self) -> None:
        """SIGTERM its group (the supervisor stops granian), SIGKILL after 30 s."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
