"""Rollup rows, bytes and worker CPU per accepted browser event: typical vs hostile traffic.

What a stranger holding only a site's public key can make the worker store. Each visit is
counted in 25 touch rollup row sets (every touch dimension, within each value of every
other) and each browser conversion in 25 more (keyed also by its free-form name), so a
visit whose landing page, source and campaign are new, and a beacon whose name is new, add
a row per set, each carrying values of up to 1,000 + 255 bytes (and a name of up to 800).

For each database URL, a new site gets N sessions and N browser conversions credited to
them, written as the worker writes them (:func:`firsttag.events.rows.write`, batches of
500), once with typical values (20 pages, 5 sources, 6 campaigns, one name) and once with
values new to every event (4-byte characters: 250-character pages, 63-character sources
and campaigns, 200-character names, all within what the door accepts). It prints rollup
rows per event, the process CPU per event (the database's own CPU not included) and, on
PostgreSQL, the bytes the four tables grew by (heap, TOAST and indexes).

Usage: python bench/rollup_amplification.py [-n N] URL [URL ...]
(a SQLite URL's file should be new; a PostgreSQL database should be one of its own).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from firsttag import sites, store, wire
from firsttag.analytics import rollups
from firsttag.events import rows
from sqlalchemy import func, select

_CJK = [chr(c) for c in range(0x20000, 0x2A6DF)]  # 4 bytes each in UTF-8
_TABLES = ("sessions", "conversions", "touch_session_days", "touch_conversion_days")


def _events(site_id: str, n: int, hostile: bool, rng: random.Random) -> tuple[list, list]:
    def word(k: int) -> str:
        return "".join(rng.choice(_CJK) for _ in range(k))

    now = store.utcnow()
    visits, beacons = [], []
    for i in range(n):
        if hostile:
            tags = f"utm_source={word(63)}&utm_medium=cpc&utm_campaign={word(63)}"
            url, name = f"https://shop.example/{word(250)}?{tags}", word(200)
        else:
            tags = f"utm_source=s{i % 5}&utm_medium=cpc&utm_campaign=c{i % 6}"
            url, name = f"https://shop.example/p{i % 20}?{tags}", "Purchase"
        ids = {"sessionId": f"s{i:08d}", "visitorId": f"v{i:08d}"}
        visits.append(
            wire.Event(
                site_id,
                now,
                wire.body_from(
                    "session",
                    {**ids, "url": url, "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"},
                ),
            )  # fmt: skip
        )
        body = {**ids, "dedupKey": f"browser:b{i:08d}", "kind": "conversion",
                "source": "browser", "name": name, "occurredAt": now}  # fmt: skip
        beacons.append(wire.Event(site_id, now, wire.body_from("conversion", body)))
    return visits, beacons


def _sizes(engine: Any) -> dict[str, int]:
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        return {
            t: int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar())
            for t in _TABLES
        }


def _run(engine: Any, n: int, hostile: bool) -> None:
    site, _ = sites.create_site(engine, "amplification", ["https://shop.example"])
    visits, beacons = _events(site.id, n, hostile, random.Random(1))
    before = _sizes(engine)
    cpu = {}
    for kind, events in (("session", visits), ("beacon", beacons)):
        start = time.process_time()
        for i in range(0, n, 500):
            with engine.begin() as conn:
                rows.write(conn, events[i : i + 500])
        cpu[kind] = (time.process_time() - start) / n * 1e3
    with engine.connect() as conn:
        count = {
            t.name: conn.execute(
                select(func.count()).select_from(t).where(t.c.site_id == site.id)
            ).scalar_one()
            for t in (
                store.session_days,
                store.touch_session_days,
                store.conversion_days,
                store.touch_conversion_days,
            )  # fmt: skip
        }
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
    label = "hostile" if hostile else "typical"
    per_visit = (count["session_days"] + count["touch_session_days"]) / n
    per_beacon = (count["conversion_days"] + count["touch_conversion_days"]) / n
    print(f"{engine.dialect.name} {label}: rollup rows per visit {per_visit:.2f}, per beacon "
          f"{per_beacon:.2f}; CPU per visit {cpu['session']:.2f} ms, "
          f"per beacon {cpu['beacon']:.2f} ms")  # fmt: skip
    after = _sizes(engine)
    if after:
        grown = {t: (after[t] - before[t]) / (2 * n) / 1024 for t in _TABLES}
        print("  KiB per accepted request: " + ", ".join(f"{t} {v:.1f}" for t, v in grown.items()))


def main() -> None:
    """Parse the arguments and measure each database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="sessions (and beacons) per run")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    for url in args.urls:
        engine = store.connect(url)
        for hostile in (False, True):
            _run(engine, args.n, hostile)


if __name__ == "__main__":
    main()
