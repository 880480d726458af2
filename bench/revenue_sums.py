"""Time the funnel and time series over many sales at the largest value, and check the sums.

Inserts N sales of ``money.MAX_MINOR_UNITS`` EUR (one in ten reported by a browser, on a site
that counts browser revenue) into a fresh store, then times
:func:`firsttag.analytics.queries.funnel` and :func:`firsttag.analytics.queries.timeseries`
(best of 3) and checks the revenue is exactly N × MAX_MINOR_UNITS, past the 2**63 where a
64-bit SUM overflows.

Usage: python bench/revenue_sums.py [N] [DATABASE_URL]
(default: 100000 rows, a SQLite file in a temporary directory). A PostgreSQL URL's tables are
dropped first: give it a database of its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime

from firsttag import money, store
from firsttag.analytics import queries as analytics
from firsttag.sites import Settings, create_site
from sqlalchemy import create_engine, insert

CHUNK = 50_000


def main() -> None:
    """Fill a store, time both analytics reads and print whether the totals are exact."""
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("database_url", nargs="?")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    if url.startswith("postgresql"):
        stale = create_engine(url)
        store.metadata.drop_all(stale)
        stale.dispose()
    engine = store.connect(url)
    site, _ = create_site(
        engine, "Bench", ["https://bench.example"], Settings(count_browser_revenue=True)
    )
    now = store.utcnow()
    with engine.begin() as conn:
        for start in range(0, args.rows, CHUNK):
            conn.execute(
                insert(store.conversions),
                [
                    {
                        "site_id": site.id,
                        "dedup_key": f"bench:{i}",
                        "kind": "sale",
                        "source": "browser" if i % 10 == 0 else "server",
                        "name": "Purchase",
                        "value": money.MAX_MINOR_UNITS,
                        "currency": "EUR",
                        "occurred_at": now,
                        "received_at": now,
                    }
                    for i in range(start, min(args.rows, start + CHUNK))
                ],
            )
    today = datetime.now(UTC).date()
    expected = args.rows * money.MAX_MINOR_UNITS
    for name, read in (("funnel", analytics.funnel), ("timeseries", analytics.timeseries)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            out = read(engine, site, today, today)
            best = min(best, time.perf_counter() - started)
        revenue = out["revenue"] if name == "funnel" else out["data"][-1]["revenue"]
        print(
            f"{engine.dialect.name} {args.rows:,} rows {name}: best of 3 {best * 1000:.0f} ms, "
            f"revenue exact: {revenue['EUR'] == expected} ({revenue['EUR']})"
        )


if __name__ == "__main__":
    main()
