"""What poison events cost the drain: the same backlog with and without them.

Pushes N good conversions of two sites straight into the buffer (plus, in the second run,
P poison events spread evenly: a date the worker refuses, a body too deep to parse, a row
the database refuses), starts one real worker and times until every good event is stored
and the buffer is empty. Prints events/s of both runs and the dead letters.

Usage: python bench/poison.py [--events 20000] [--poison 20]
Everything runs on 127.0.0.1 in a temporary directory and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firsttag import store  # noqa: E402
from firsttag.events import deadletters, wire  # noqa: E402
from firsttag.events.buffer import BUFFER_KEY, EventBuffer  # noqa: E402
from firsttag.ops.embedded_redis import EmbeddedRedis  # noqa: E402
from firsttag.sites import create_site  # noqa: E402


def encode(kind: str, site_id: str, now: str, data: dict) -> str:
    """An event as the wire writes it, whatever its data (a poison event may lack fields)."""
    head = {"kind": kind, "site": site_id, "receivedAt": now, "v": wire.VERSION, "data": data}
    return json.dumps(head, separators=(",", ":"))


def poison_event(site_id: str, n: int) -> str:
    now = store.utcnow()
    if n % 3 == 0:
        return encode("conversion", site_id, now, {"dedupKey": f"p{n}", "occurredAt": "never"})
    if n % 3 == 1:
        head = f'{{"kind":"conversion","site":"{site_id}","receivedAt":"{now}","data":'
        return head + "[" * 100_000 + "]" * 100_000 + "}"
    return encode("session", site_id, now, {"sessionId": f"p{n}", "visitorId": None})


def good_event(site_id: str, n: int) -> str:
    now = store.utcnow()
    data = {
        "dedupKey": f"browser:bench{n:010d}",
        "kind": "sale",
        "source": "browser",
        "name": "Purchase",
        "visitorId": "v" * 32,
        "value": n,
        "currency": "EUR",
        "occurredAt": now,
    }
    return encode("conversion", site_id, now, data)


def run(events: int, poison: int, root: Path, redis_url: str) -> tuple[float, int]:
    redis = Redis.from_url(redis_url)
    redis.flushall()
    db = root / f"bench-{poison}.db"
    engine = store.connect(f"sqlite:///{db}")
    sites = [create_site(engine, f"s{i}", ["https://shop.example"])[0].id for i in (0, 1)]
    buffer = EventBuffer(redis, "firsttag")
    every = events // poison if poison else events + 1
    for n in range(events):
        site_id = sites[n % 2]
        buffer.push_many(site_id, [good_event(site_id, n)])
        if n % every == every - 1:
            buffer.push_many(site_id, [poison_event(site_id, n)])
    env = dict(
        os.environ,
        FIRSTTAG_DATA_DIR=str(root),
        FIRSTTAG_DATABASE_URL=f"sqlite:///{db}",
        FIRSTTAG_REDIS_URL=redis_url,
    )
    start = time.monotonic()
    with (root / f"worker-{poison}.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "firsttag.ops.cli", "worker"], env=env, stdout=log, stderr=log
        )
    try:
        while True:
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(store.conversions)).scalar()
            if done == events and redis.llen(BUFFER_KEY) == 0:
                break
            if time.monotonic() - start > 600:
                raise SystemExit("timed out")
            time.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        worker.terminate()
        worker.wait(30)
    return elapsed, deadletters.count(redis)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--poison", type=int, default=20)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = EmbeddedRedis(root / "redis")
        url = server.start()
        try:
            for poison in (0, opts.poison):
                elapsed, letters = run(opts.events, poison, root, url)
                print(
                    f"{opts.events:,} good events + {poison} poison: stored in {elapsed:.2f} s "
                    f"({opts.events / elapsed:,.0f} events/s, worker start included), "
                    f"{letters} dead letters"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
