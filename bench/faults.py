"""Measure what each fault under ``firsttag serve`` costs, and print the figures.

1. Redis SIGKILLed while one client posts beacons back to back: how long and how many
   writes are refused (503), how long until writes are accepted again, and whether every
   acknowledged (202) event is stored exactly once.
2. The web server (granian's main process) SIGKILLed: how long the port does not answer.
3. A worker SIGKILLed as soon as it is back, four times: the restart delays ``serve`` logs.
4. A small ``FIRSTTAG_REDIS_MAXMEMORY`` and no worker: beacons of ~9 KB until Redis is
   full; the answer then, and whether every acknowledged event is still in Redis.

Usage: python bench/faults.py [--maxmemory 16mb]
Everything listens on 127.0.0.1, uses a temporary data dir and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firsttag.events.buffer import BUFFER_KEY  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


class Serve:
    """`firsttag serve` in a temporary data dir, with a site."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="firsttag-faults-"))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
        self.env.update(env or {})
        cli = [sys.executable, "-m", "firsttag.ops.cli"]
        port = self.url.rsplit(":", 1)[1]
        with (self.data / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*cli, "serve", "--port", port, "--data-dir", str(self.data), *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait(self.healthy, 60, "serve")
        out = subprocess.run(
            [*cli, "sites", "create", "--name", "F", "--origin", "https://shop.example"]
            + ["--data-dir", str(self.data)],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.site = json.loads(out)

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def child(self, marker: str, other_than: int | None = None) -> int | None:
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except FileNotFoundError:
                    continue
                if marker in cmd and int(pid) != other_than:
                    return int(pid)
        return None

    def beacon(self, event_id: str, metadata: dict | None = None) -> int:
        body = {"siteKey": self.site["siteKey"], "id": event_id, "name": "F", "visitorId": "v" * 32}
        if metadata:
            body["metadata"] = metadata
        try:
            return requests.post(
                self.url + "/api/v1/beacon", data=json.dumps(body), timeout=10
            ).status_code
        except requests.RequestException:
            return 0

    def stored(self) -> list[str]:
        with sqlite3.connect(self.data / "firsttag.db") as conn:
            return [r[0] for r in conn.execute("SELECT dedup_key FROM conversions")]

    def log(self) -> str:
        return (self.data / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)


def faults() -> None:
    serve = Serve()
    try:
        redis_fault(serve)
        web_fault(serve)
        worker_fault(serve)
    finally:
        serve.stop()


def redis_fault(serve: Serve) -> None:
    answers: list[tuple[float, int, str]] = []
    done = threading.Event()

    def sender() -> None:
        n = 0
        while not done.is_set():
            n += 1
            event_id = f"r{n:08d}"
            answers.append((time.monotonic(), serve.beacon(event_id), event_id))

    thread = threading.Thread(target=sender)
    thread.start()
    time.sleep(2)
    redis = serve.child("redis-server")
    killed_at = time.monotonic()
    os.kill(redis, signal.SIGKILL)
    wait(lambda: any(t > killed_at and s == 202 for t, s, _ in answers[-50:]), 60, "a 202")
    time.sleep(2)
    done.set()
    thread.join()
    acked = [e for _, s, e in answers if s == 202]
    refused = [(t, s) for t, s, _ in answers if s != 202]
    back = min(t for t, s, _ in answers if t > killed_at and s == 202)
    wait(lambda: {f"browser:{e}" for e in acked} <= set(serve.stored()), 120, "all stored")
    stored_at = time.monotonic()
    keys = serve.stored()
    print("1. Redis SIGKILL under a client posting back to back")
    print(f"   writes answered 202: {len(acked)}; refused: {len(refused)}", end=" ")
    print(f"(statuses {sorted({s for _, s in refused})})")
    print(f"   from the kill to the first accepted write: {back - killed_at:.2f} s")
    print(f"   acknowledged events stored: {len(set(acked) & {k[8:] for k in keys})}/{len(acked)}")
    print(f"   stored rows {len(keys)}, distinct {len(set(keys))}")
    print(f"   from the kill to every acknowledged event stored: {stored_at - killed_at:.2f} s")
    print("   " + "\n   ".join(re.findall(r"firsttag: redis .*", serve.log())))


def web_fault(serve: Serve) -> None:
    web = serve.child("granian")
    killed_at = time.monotonic()
    os.kill(web, signal.SIGKILL)
    wait(lambda: serve.child("granian", other_than=web), 30, "a new web server")
    wait(serve.healthy, 60, "the web server")
    print("2. web server SIGKILL")
    print(f"   from the kill to /healthz answering 200 again: {time.monotonic() - killed_at:.2f} s")
    print("   " + "\n   ".join(re.findall(r"firsttag: web .*", serve.log())))


def worker_fault(serve: Serve) -> None:
    worker = None
    for _ in range(4):
        worker = wait(
            lambda w=worker: serve.child("firsttag.ops.cli worker", other_than=w), 60, "w"
        )
        os.kill(worker, signal.SIGKILL)
    wait(lambda: serve.child("firsttag.ops.cli worker", other_than=worker), 60, "the worker back")
    print("3. worker SIGKILLed as soon as it is back, 4 times")
    print("   " + "\n   ".join(re.findall(r"firsttag: worker-0 .*", serve.log())))


def maxmemory_fault(maxmemory: str) -> None:
    serve = Serve("--workers", "0", env={"FIRSTTAG_REDIS_MAXMEMORY": maxmemory})
    try:
        fill(serve, maxmemory)
    finally:
        serve.stop()


def fill(serve: Serve, maxmemory: str) -> None:
    padding = {"pad": "x" * 9000}
    accepted, status, n = 0, 202, 0
    while status == 202 and n < 100_000:
        n += 1
        status = serve.beacon(f"m{n:08d}", padding)
        accepted += status == 202
    small = {
        "siteKey": serve.site["siteKey"],
        "id": "small0001",
        "name": "F",
        "visitorId": "v" * 32,
    }
    body = requests.post(serve.url + "/api/v1/beacon", data=json.dumps(small), timeout=10)
    redis = Redis.from_url(f"unix://{serve.data / 'redis' / 'redis.sock'}")
    info = redis.info("memory")
    print(f"4. FIRSTTAG_REDIS_MAXMEMORY={maxmemory}, no worker, beacons of ~9 KB")
    print(f"   accepted {accepted}, then {status}; a small beacon after that: {body.status_code}")
    print(f"   {body.headers.get('Retry-After')=} {body.text.strip()}")
    print(f"   events in the Redis buffer: {redis.llen(BUFFER_KEY)} (acknowledged: {accepted})")
    print(f"   used_memory {info['used_memory_human']} of maxmemory {info['maxmemory_human']},")
    print(
        f"   policy {info['maxmemory_policy']}, evicted_keys {redis.info('stats')['evicted_keys']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maxmemory", default="16mb")
    opts = parser.parse_args()
    faults()
    maxmemory_fault(opts.maxmemory)


if __name__ == "__main__":
    main()
