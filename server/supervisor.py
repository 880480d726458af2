"""``firsttag serve``: Redis, RQ workers and the web server as one foreground command.

Children are started in their own sessions so a terminal's Ctrl-C reaches only this
process, which then stops them in order: the web server first (no new events), then the
workers (RQ finishes the batch in hand), then Redis (which flushes its append-only file).
A worker that dies is restarted; if the web server dies, everything stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import store
from .config import Config
from .embedded_redis import EmbeddedRedis


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> None:
        """Start (or restart) the process."""
        self.process = subprocess.Popen(
            self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )

    def stop(self, timeout: float) -> None:
        """SIGTERM the child's whole process group, SIGKILL what is left after ``timeout``.

        The group matters: granian's worker processes hold the listening socket and may
        outlive its main process; until they are gone, the port still answers.
        """
        if self.process is None:
            return
        group = self.process.pid  # start_new_session made the child a group leader
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(group, signal.SIGKILL)
        self.process.wait()


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent() -> None:
    # If the supervisor is killed outright, Linux sends its children SIGTERM instead of
    # leaving them orphaned and holding the port.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(
    config: Config,
    host: str,
    port: int,
    workers: int = 1,
    web_processes: int = 1,
    echo: Callable[[str], None] = print,
) -> int:
    """Run everything until SIGINT/SIGTERM; return the exit status."""
    redis = None
    redis_url = config.redis_url
    if not redis_url:
        redis = EmbeddedRedis(config.data_dir / "redis", appendfsync=config.redis_fsync)
        redis_url = redis.start()
        echo(f"firsttag: redis started ({redis_url})")
    store.connect(config.database_url).dispose()  # create the schema once, before children

    env = dict(os.environ)
    env.update(
        FIRSTTAG_DATA_DIR=str(config.data_dir),
        FIRSTTAG_DATABASE_URL=config.database_url,
        FIRSTTAG_REDIS_URL=redis_url,
        FIRSTTAG_PUBLIC_URL=config.public_url,
    )
    python = sys.executable
    worker_children = [
        Child(f"worker-{i}", [python, "-m", "server.cli", "worker"], env) for i in range(workers)
    ]
    web = Child(
        "web",
        [
            python,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(web_processes),
            "--no-ws",
            # Handlers spend their time in one Redis round trip; a few threads per core
            # keep the CPU busy (granian warns above 2 x cores + 1).
            "--blocking-threads",
            str(2 * (os.cpu_count() or 1)),
            "--log-level",
            "warning",
            "server.wsgi:app",
        ],
        env,
    )

    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for child in worker_children:
            child.start()
        web.start()
        echo(f"firsttag: serving on http://{host}:{port} (data in {config.data_dir})")
        while not stopping:
            time.sleep(0.2)
            if web.process and web.process.poll() is not None:
                echo(f"firsttag: web server exited with {web.process.returncode}; stopping")
                status = 1
                break
            for child in worker_children:
                if child.process and child.process.poll() is not None:
                    echo(
                        f"firsttag: {child.name} exited with {child.process.returncode}; restarting"
                    )
                    child.start()
    finally:
        echo("firsttag: stopping")
        web.stop(10)
        for child in worker_children:
            child.stop(30)
        if redis:
            redis.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    return status
