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
