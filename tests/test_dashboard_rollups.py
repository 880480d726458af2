"""The dashboard's rollups equal a recount of the rows after replays, refunds and updates.

A real worker drains events pushed to the real buffer (as the web tier pushes them), into
the real store. The rollups are kept by the worker in the rows' transaction; these tests
compare them with a recount made afterwards from the stored rows.
"""

from __future__ import annotations

from firsttag import store
from firsttag.analytics import rollups
from firsttag.events.buffer import BUFFER_KEY, LEASE_KEY, EventBuffer
from redis import Redis
from sqlalchemy import func, select

from tests.support import wait_until
from tests.test_pipeline import event


def at(minute: int, second: int = 0) -> str:
    hour, minute = divmod(minute, 60)
    return f"2026-03-01T{10 + hour:02d}:{minute:02d}:{second:02d}.000000Z"


def session(site_id: str, n: int, minute: int, click: bool, bot: bool = False):
    data = {
        "sessionId": f"s{n:04d}",
        "visitorId": f"v{n % 7:04d}",
        "clickId": f"click{n}" if click else None,
        "url": _landing(n),
        "bot": bot,
    }
    return event("session", site_id, at(minute, n % 60), data)


def _landing(n: int) -> str:
    # Two visits in three come from a tagged campaign (paid search or email), so the touch
    # rollups have channels, sources, campaigns and pages to split by; the third is direct.
    if n % 3 == 2:
        return "https://shop.example/"
    medium = "cpc" if n % 2 else "email"
    tags = f"utm_source=s{n % 5}&utm_medium={medium}&utm_campaign=c{n % 6}"
    return f"https://shop.example/p{n % 4}?{tags}"


def order(site_id: str, order_id: str, minute: int, version: str, status: str, refunded: int):
    data = {
        "dedupKey": f"order:{order_id}",
        "kind": "sale",
        "source": "order",
        "name": "Order",
        "orderId": order_id,
        "visitorId": "v0001",
        "value": 10_000,
        "refunded": refunded,
        "currency": "EUR",
        "status": status,
        "stateVersion": version,
        # An update reports its own time; the stored first time must stay the bucket.
        "occurredAt": at(minute),
    }
    return event("conversion", site_id, at(minute), data)


def conversion(site_id: str, n: int, kind: str, source: str, minute: int, value=None):
    data = {
        "dedupKey": f"{source}:c{n}",
        "kind": kind,
        "source": source,
        "name": {"lead": "Sign Up", "sale": "Purchase"}.get(kind, "Newsletter"),
        "visitorId": f"v{n % 7:04d}",
        "value": value,
        "currency": "USD" if value is not None else None,
        "occurredAt": at(minute, n % 60),
    }
    return event("conversion", site_id, at(minute, n % 60), data)


def drain(config, events) -> None:
    redis = Redis.from_url(config.redis_url)
    buffer = EventBuffer(redis, config.queue_name)
    for e in events:
        buffer.push(e)
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0 and not redis.exists(LEASE_KEY), 30, "drained")


def rollup_total(engine, site_id: str, column: str) -> int:
    table = store.conversion_rollups if column != "sessions" else store.session_rollups
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(table.c[column]), 0)).where(
                    table.c.site_id == site_id
                )
            ).scalar_one()
        )


def test_rollups_equal_a_recount_after_replays_refunds_and_status_changes(
    config, engine, site, worker
):
    first = (
        [session(site.id, n, minute=n * 3, click=n % 3 == 0, bot=n % 10 == 9) for n in range(40)]
        + [conversion(site.id, n, "lead", "track", minute=n * 4) for n in range(20)]
        + [
            conversion(site.id, n, "sale", "browser", minute=n * 5, value=999)
            for n in range(20, 30)
        ]
        + [conversion(site.id, n, "conversion", "server", minute=n) for n in range(30, 35)]
        + [
            order(site.id, "A", 7, "0001", "completed", 0),
            order(site.id, "B", 50, "0001", "completed", 0),
        ]
    )
    drain(config, first)
    # Replays of everything, order A refunded in part then in full (reported an hour later,
    # in another bucket), order B cancelled, then an older version of B that must not win.
    later = [
        order(site.id, "A", 70, "0002", "processing", 2_500),
        order(site.id, "A", 95, "0003", "refunded", 10_000),
        order(site.id, "B", 80, "0002", "cancelled", 0),
        order(site.id, "B", 85, "0001", "completed", 0),
    ]
    drain(config, first + later + first)

    with engine.connect() as conn:
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
        rows = conn.execute(
            select(store.conversions.c.status, store.conversions.c.refunded)
            .where(store.conversions.c.order_id.is_not(None))
            .order_by(store.conversions.c.order_id)
        ).all()
    assert [tuple(r) for r in rows] == [("refunded", 10_000), ("cancelled", 0)]
    # Independently of the recount: every event counted exactly once.
    assert rollup_total(engine, site.id, "sessions") == 40
    assert rollup_total(engine, site.id, "conversions") == 20 + 10 + 5 + 2
    # Net money: browser sales 10 × 9.99 USD; order A fully refunded, B still 100.00 EUR.
    with engine.connect() as conn:
        t = store.conversion_rollups
        money = dict(
            conn.execute(
                select(t.c.currency, func.sum(t.c.value_high * rollups.SPLIT + t.c.value_low))
                .where(t.c.site_id == site.id, t.c.currency != "")
                .group_by(t.c.currency)
            ).all()
        )
    assert {k: int(v) for k, v in money.items()} == {"USD": 9_990, "EUR": 10_000}
    # The touch rollups: every non-bot session and every conversion once per dimension,
    # and some conversions credited to a tagged visit (not all to "none").
    with engine.connect() as conn:
        for dimension in rollups.TOUCH_DIMENSIONS:
            ts, tc = store.touch_session_rollups, store.touch_conversion_rollups
            n_sessions = conn.execute(
                select(func.sum(ts.c.sessions)).where(
                    ts.c.site_id == site.id, ts.c.dimension == dimension
                )
            ).scalar_one()
            assert int(n_sessions) == 40 - 4  # four bots
            by_value = dict(
                conn.execute(
                    select(tc.c.value, func.sum(tc.c.conversions))
                    .where(tc.c.site_id == site.id, tc.c.dimension == dimension)
                    .group_by(tc.c.value)
                ).all()
            )
            assert sum(int(v) for v in by_value.values()) == 37
            assert set(by_value) - {""}, f"no conversion credited by {dimension}"


def test_rebuild_recounts_a_store_that_had_no_rollups(config, engine, site, worker):
    drain(config, [session(site.id, n, minute=n, click=True) for n in range(12)])
    with engine.begin() as conn:
        conn.execute(store.session_rollups.delete())
        conn.execute(store.touch_session_rollups.delete())
        assert rollups.stored(conn, site.id) != rollups.recount(conn, site.id)
        rollups.rebuild(conn)
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)


def test_buckets_are_quarter_hours_that_sort_with_store_times():
    assert rollups.bucket_of("2026-03-01T10:14:59.999999Z") == "2026-03-01T10:00"
    assert rollups.bucket_of("2026-03-01T10:15:00.000000Z") == "2026-03-01T10:15"
    assert rollups.bucket_of("2026-03-01T23:59:00.000000Z") == "2026-03-01T23:45"
    assert "2026-03-01T10:15" <= "2026-03-01T10:15:00.000000Z" < "2026-03-01T10:30"
