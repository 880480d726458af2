"""Measure the pipeline on this machine and print the figures.

1. HTTP ingest: wrk posts unique browser conversions to ``/api/v1/beacon`` of a running
   ``firsttag serve`` (embedded Redis, SQLite); prints accepted requests/s and latency.
2. Drain: after the load stops, the time the worker takes to store the backlog, and a check
   that every accepted request was stored exactly once.
3. Worker throughput alone: N events pushed straight into the buffer, timed into SQLite.
4. The tag: ``GET /t/<id>.js`` requests/s.

Usage: python bench/ingest.py [--seconds 10] [--connections 64] [--web-processes 2]
Needs wrk on PATH (apt install wrk). Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firsttag.events.buffer import BUFFER_KEY, EventBuffer  # noqa: E402

LUA = """
local threads, counter = {}, 0
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
function init(args) prefix = string.format("w%02d", tid) end
request = function()
  counter = counter + 1
  local body = '{"siteKey":"SITE_KEY","id":"' .. prefix .. string.format("%012d", counter) ..
    '","name":"Bench","visitorId":"VISITOR","value":1999,"currency":"EUR"}'
  return wrk.format("POST", "/api/v1/beacon", {["Content-Type"] = "text/plain"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM conversions").fetchone()[0]


def wrk(args: list[str]) -> dict[str, float]:
    out = subprocess.run(["wrk", *args], capture_output=True, text=True, check=True).stdout
    print(out)
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    figures["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--drain-events", type=int, default=100_000)
    parser.add_argument("--redis-fsync", choices=("always", "everysec"), default="always")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt install wrk")

    data = Path(tempfile.mkdtemp(prefix="firsttag-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
    env["FIRSTTAG_REDIS_FSYNC"] = opts.redis_fsync
    # wrk is one client on one address: lift the rate limits, or it measures only them.
    env["FIRSTTAG_RATE_PER_IP"] = env["FIRSTTAG_RATE_BROWSER"] = "100000000"
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firsttag.ops.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--web-processes",
            str(opts.web_processes),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(base + "/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait(up, 60, "firsttag serve")
        site = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "firsttag.ops.cli",
                    "sites",
                    "create",
                    "--name",
                    "Bench",
                    "--origin",
                    "https://bench.example",
                    "--data-dir",
                    str(data),
                ],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        redis = Redis.from_url(f"unix://{data / 'redis' / 'redis.sock'}")
        db = data / "firsttag.db"
        script = data / "beacon.lua"
        script.write_text(LUA.replace("SITE_KEY", site["siteKey"]).replace("VISITOR", "v" * 32))

        print(
            f"== 1. HTTP ingest: wrk -t2 -c{opts.connections} -d{opts.seconds}s POST /api/v1/beacon"
        )
        ingest = wrk(
            [
                "-t2",
                f"-c{opts.connections}",
                f"-d{opts.seconds}s",
                "--latency",
                "-s",
                str(script),
                base,
            ]
        )
        load_end = time.monotonic()
        backlog = redis.llen(BUFFER_KEY)
        wait(lambda: redis.llen(BUFFER_KEY) == 0, 300, "the backlog to drain")
        drain_s = time.monotonic() - load_end
        count = stored(db)
        accepted = ingest["requests"] - ingest["non2xx"]
        print(f"== 2. backlog at end of load: {backlog} events, drained in {drain_s:.2f}s")
        print(
            f"   accepted (2xx, completed): {accepted}; stored: {count}; "
            f"rows per accepted: {count / max(accepted, 1):.4f} "
            "(>= 1 only by requests in flight when wrk stopped)"
        )

        n = opts.drain_events
        print(f"== 3. worker alone: {n} events pushed into the buffer, then drained")
        buffer = EventBuffer(redis, "firsttag")
        pipe = redis.pipeline(transaction=False)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        for i in range(n):
            event = {
                "kind": "conversion",
                "site": site["id"],
                "receivedAt": now,
                "data": {
                    "dedupKey": f"browser:drain{i:012d}",
                    "kind": "sale",
                    "source": "browser",
                    "name": "Bench",
                    "visitorId": "v" * 32,
                    "value": 1,
                    "currency": "EUR",
                    "occurredAt": now,
                },
            }
            pipe.rpush(BUFFER_KEY, json.dumps(event, separators=(",", ":")))
        pipe.execute()
        before = stored(db)
        start = time.monotonic()
        buffer.kick()
        wait(lambda: redis.llen(BUFFER_KEY) == 0, 600, "the drain")
        elapsed = time.monotonic() - start
        added = stored(db) - before
        print(f"   stored {added} in {elapsed:.2f}s: {added / elapsed:,.0f} events/s into SQLite")

        print("== 4. the tag: wrk -t2 -c64 GET /t/<id>.js")
        tag = wrk(["-t2", "-c64", f"-d{max(opts.seconds // 2, 3)}s", f"{base}/t/{site['id']}.js"])
        print(f"\nsummary (embedded Redis appendfsync {opts.redis_fsync}):")
        print(
            f"  ingest      {ingest['rps']:,.0f} requests/s accepted ({ingest['non2xx']} non-2xx)"
        )
        print(f"  drain       {added / elapsed:,.0f} events/s (batches of 1,000, SQLite)")
        print(f"  tag         {tag['rps']:,.0f} requests/s")
        print(f"  exactly once: {count} stored for {accepted} accepted requests")
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
