"""CPU per event of the worker's ``write_batch``, in process, and where it goes.

Builds ``--events`` buffered beacons (as ``bench/ratios.py`` buffers them), then calls
:meth:`firsttag.events.drain.Drainer.write_batch` on batches of ``--batch`` (the
configured batch size by default) against a fresh SQLite file (or ``--database URL``),
and prints µs of CPU per event, with the share of the dashboard rollups
(:mod:`firsttag.analytics.rollups`, timed apart so the rest of the drain can be read on its
own); ``--profile`` prints the top of a cProfile too.

Usage: ``.venv/bin/python bench/profile_drain.py [--events 50000] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from firsttag import store  # noqa: E402
from firsttag.analytics import rollups  # noqa: E402
from firsttag.config import Config  # noqa: E402
from firsttag.events.drain import Drainer  # noqa: E402
from firsttag.ops.embedded_redis import EmbeddedRedis  # noqa: E402
from firsttag.sites import create_site  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import text  # noqa: E402


def beacons(site_id: str, count: int, tag: str) -> list[bytes]:
    """``count`` buffered browser conversions of ``site_id``, as the web tier queues them."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return [
        json.dumps(
            {
                "kind": "conversion",
                "site": site_id,
                "receivedAt": now,
                "v": 2,
                "data": {
                    "dedupKey": f"browser:d{tag}{i:09d}",
                    "kind": "sale",
                    "source": "browser",
                    "name": "Bench",
                    "visitorId": "v" * 32,
                    "value": 1999,
                    "currency": "EUR",
                    "occurredAt": now,
                },
            },
            separators=(",", ":"),
        ).encode()
        for i in range(count)
    ]


class PhaseTimer:
    """CPU seconds spent inside some module functions, by wrapping them in place."""

    def __init__(self, module: object, names: tuple[str, ...]) -> None:
        self.seconds = 0.0
        for name in names:
            setattr(module, name, self._timed(getattr(module, name)))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - started

        return timed


def main() -> None:
    """Time (and optionally profile) write_batch over the events."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=Config.batch_size)
    parser.add_argument("--database", help="a SQLAlchemy URL (default: a fresh SQLite file)")
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ft-drain-"))
    redis_server = EmbeddedRedis(work / "redis", appendfsync="everysec")
    url = redis_server.start()
    try:
        engine = store.connect(opts.database or f"sqlite:///{work / 'ft.db'}")
        site, _ = create_site(engine, "Bench", ["https://shop.example"])
        raw = beacons(site.id, opts.events, str(int(time.time())))
        drainer = Drainer(Redis.from_url(url), engine, opts.batch)
        rollup_time = PhaseTimer(rollups, ("stored_before", "refresh"))
        profiler = cProfile.Profile() if opts.profile else None
        started, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(0, len(raw), opts.batch):
            assert drainer.write_batch(raw[i : i + opts.batch]) == []
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - started, time.perf_counter() - wall
        with engine.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM conversions WHERE site_id = :s"), {"s": site.id}
            ).scalar_one()
        assert count == opts.events, count
        print(
            f"{opts.events} events in batches of {opts.batch}: {cpu / opts.events * 1e6:.1f} µs "
            f"CPU per event in this process, {opts.events / wall:,.0f} events/s wall"
        )
        share = rollup_time.seconds / opts.events * 1e6
        print(
            f"  of which rollups (stored_before + refresh) {share:.1f} µs, "
            f"the rest {cpu / opts.events * 1e6 - share:.1f} µs"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    finally:
        redis_server.stop()


if __name__ == "__main__":
    main()
