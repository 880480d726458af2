"""``firsttag serve``: Redis, RQ workers and the web server as one foreground command.

Children are started in their own sessions so a terminal's Ctrl-C reaches only this
process, which then stops them in order: the web server first (no new events), then the
workers (RQ finishes the batch in hand), then Redis (which flushes its append-only file).

Any child that dies (Redis, a worker, the web server) is reaped, what is left of its
process group is stopped, and it is started again after a delay that doubles with each
quick death (0.5 s up to 30 s) and starts over once it has stayed up for a minute. Redis
comes back on the same directory, append-only file and socket, so the web processes and
workers reconnect by themselves; events Redis acknowledged are in its append-only file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firsttag import store
from firsttag.config import Config
from firsttag.metrics import MULTIPROC_ENV, fresh_multiprocess_dir
from firsttag.ops.embedded_redis import EmbeddedRedis

#: Seconds before the first restart of a child that died; doubled for each further death.
FIRST_DELAY = 0.5
#: The longest wait between restarts.
MAX_DELAY = 30.0
#: A child that stayed up this long (seconds) is healthy: its next restart is quick again.
STABLE_AFTER = 60.0
#: How long a dead child's leftover processes get to exit on SIGTERM before SIGKILL.
LEFTOVER_GRACE = 5.0


@dataclass
class Backoff:
    """Exponential restart delays, so a child that cannot run does not spin."""

    first: float = FIRST_DELAY
    cap: float = MAX_DELAY
    stable_after: float = STABLE_AFTER
    failures: int = 0

    def delay(self, uptime: float) -> float:
        """Seconds to wait before restarting a child that died after ``uptime`` seconds."""
        if uptime >= self.stable_after:
            self.failures = 0
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay


@dataclass
class Child:
    """One supervised process, how to start it again, and when."""

    name: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: When a dead child is due to start again; None while it runs.
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def start(self) -> None:
        """Start (or restart) the process."""
        self.process = self.spawn()
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, now: float, echo: Callable[[str], None]) -> None:
        """Reap the child if it died and schedule its restart; restart it when due."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self._restart(now, echo)
            return
        if self.process is None or self.process.poll() is None:
            return
        # poll() reaped it (no zombie); its group may still hold a port or a socket.
        self._stop_group(self.process.pid, LEFTOVER_GRACE)
        uptime = now - self.started_at
        delay = self.backoff.delay(uptime)
        self.restart_at = now + delay
        echo(
            f"firsttag: {self.name} (pid {self.process.pid}) {_exit_reason(self.process)} "
            f"after {uptime:.1f} s; restarting in {delay:g} s"
        )

    def _restart(self, now: float, echo: Callable[[str], None]) -> None:
        try:
            self.start()
        except (OSError, RuntimeError) as exc:  # no binary, no fork: try again later
            delay = self.backoff.delay(0.0)
            self.restart_at = now + delay
            echo(f"firsttag: {self.name} could not start ({exc}); retrying in {delay:g} s")
            return
        echo(f"firsttag: {self.name} restarted (pid {self.process.pid if self.process else '?'})")

    def stop(self, timeout: float) -> None:
        """SIGTERM the child's whole process group, SIGKILL what is left after ``timeout``.

        The group matters: granian's worker processes hold the listening socket and may
        outlive its main process; until they are gone, the port still answers.
        """
        if self.process is None or self.restart_at is not None:
            return  # never started, or dead and its group already stopped by check()
        self._stop_group(self.process.pid, timeout)
        self.process.wait()

    def _stop_group(self, group: int, timeout: float) -> None:
        # start_new_session made the child a group leader: its pid is the group id.
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(group, signal.SIGKILL)


def _exit_reason(process: subprocess.Popen[bytes]) -> str:
    code = process.returncode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


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


def _spawner(argv: list[str], env: dict[str, str]) -> Callable[[], subprocess.Popen[bytes]]:
    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    return spawn


def _port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port``.

    Checked once before starting, so a taken port is a clear error at once rather than a
    web server that is restarted every 30 s for ever.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def blocking_threads(config: Config) -> int:
    """WSGI threads per web process (``FIRSTTAG_WEB_THREADS``): many, because they wait.

    A browser event is answered only once Redis has fsynced it (``appendfsync always``),
    a few milliseconds in which its thread holds no CPU; what a process accepts per second
    is its threads divided by that wait. Redis flushes once per turn of its event loop
    for every request it read in that turn, so more requests waiting means more events
    per fsync, not more fsyncs. (The former 2 x cores kept eight requests in flight on
    two cores, which capped ingest at eight per fsync; granian's warning above
    2 x cores + 1 threads assumes threads that compute.)
    """
    return config.web_threads


def serve(
    config: Config,
    host: str,
    port: int,
    workers: int = 1,
    web_processes: int = 1,
    echo: Callable[[str], None] = print,
) -> int:
    """Run everything until SIGINT/SIGTERM, restarting children that die; return the status."""
    if _port_taken(host, port):
        echo(f"firsttag: {host}:{port} is already in use; choose another --port")
        return 1
    redis = None
    redis_url = config.redis_url
    if not redis_url:
        redis = EmbeddedRedis(
            config.data_dir / "redis",
            appendfsync=config.redis_fsync,
            maxmemory=config.redis_maxmemory,
        )
        redis_url = redis.start()
        echo(f"firsttag: redis started ({redis_url}, maxmemory {config.redis_maxmemory} bytes)")
    store.connect(config.database_url).dispose()  # migrate the schema once, before children

    env = dict(os.environ)
    env.update(
        FIRSTTAG_DATA_DIR=str(config.data_dir),
        FIRSTTAG_DATABASE_URL=config.database_url,
        FIRSTTAG_REDIS_URL=redis_url,
        FIRSTTAG_PUBLIC_URL=config.public_url,
    )
    # One metrics directory for every child: the web's /metrics then sums the workers too.
    env[MULTIPROC_ENV] = os.environ.get(MULTIPROC_ENV) or fresh_multiprocess_dir(
        config.data_dir / "metrics"
    )
    python = sys.executable
    worker_children = [
        Child(f"worker-{i}", _spawner([python, "-m", "firsttag.ops.cli", "worker"], env))
        for i in range(workers)
    ]
    web = Child(
        "web",
        _spawner(
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
                "--blocking-threads",
                str(blocking_threads(config)),
                "--log-level",
                "warning",
                "firsttag.web.wsgi:app",
            ],
            env,
        ),
    )
    redis_child = None
    if redis:
        redis_child = Child("redis", redis.launch, redis.process, time.monotonic())

    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    supervised = [*([redis_child] if redis_child else []), *worker_children, web]
    try:
        for child in worker_children:
            child.start()
        web.start()
        echo(f"firsttag: serving on http://{host}:{port} (data in {config.data_dir})")
        while not stopping:
            time.sleep(0.2)
            for child in supervised:
                child.check(time.monotonic(), echo)
    finally:
        echo("firsttag: stopping")
        web.stop(10)
        for child in worker_children:
            child.stop(30)
        if redis_child:
            redis_child.stop(30)  # SIGTERM: Redis flushes its append-only file, then exits
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
