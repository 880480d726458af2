"""The dashboard's rollups equal a recount of the rows after replays, refunds and updates.

A real worker drains events pushed to the real buffer (as the web tier pushes them), into
the real store. The rollups are kept by the worker in the rows' transaction; these tests
compare them with a recount made afterwards from the stored rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from firsttag import store
from firsttag.analytics import overview, rollups
from firsttag.analytics.periods import resolve
from firsttag.events.buffer import BUFFER_KEY, LEASE_KEY, EventBuffer
from firsttag.events.deadletters import DEAD_LETTER_KEY
from firsttag.sites import update_settings
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


def order(
    site_id: str,
    order_id: str,
    minute: int,
    version: str,
    status: str,
    refunded: int,
    value: int = 10_000,
):
    data = {
        "dedupKey": f"order:{order_id}",
        "kind": "sale",
        "source": "order",
        "name": "Order",
        "orderId": order_id,
        "visitorId": "v0001",
        "value": value,
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
    table = store.conversion_days if column != "sessions" else store.session_days
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
        t = store.conversion_days
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
            ts, tc = store.touch_session_days, store.touch_conversion_days
            n_sessions = conn.execute(
                select(func.sum(ts.c.sessions)).where(
                    ts.c.site_id == site.id, ts.c.filter_dimension == "",
                    ts.c.dimension == dimension,
                )  # fmt: skip
            ).scalar_one()
            assert int(n_sessions) == 40 - 4  # four bots
            whole = dict(
                conn.execute(
                    select(tc.c.value, func.sum(tc.c.conversions))
                    .where(tc.c.site_id == site.id, tc.c.filter_dimension == "",
                           tc.c.dimension == dimension)  # fmt: skip
                    .group_by(tc.c.value)
                ).all()
            )
            assert sum(int(v) for v in whole.values()) == 37
            assert set(whole) - {""}, f"no conversion credited by {dimension}"
            # Within the values of any other dimension, the same conversions, split.
            for other in set(rollups.TOUCH_DIMENSIONS) - {dimension}:
                split = dict(
                    conn.execute(
                        select(tc.c.value, func.sum(tc.c.conversions))
                        .where(tc.c.site_id == site.id, tc.c.filter_dimension == other,
                               tc.c.dimension == dimension)  # fmt: skip
                        .group_by(tc.c.value)
                    ).all()
                )
                assert split == whole, (other, dimension)


def test_rebuild_recounts_a_store_that_had_no_rollups(config, engine, site, worker):
    drain(config, [session(site.id, n, minute=n, click=True) for n in range(12)])
    with engine.begin() as conn:
        conn.execute(store.session_days.delete())
        conn.execute(store.touch_session_days.delete())
        assert rollups.stored(conn, site.id) != rollups.recount(conn, site.id)
        rollups.rebuild(conn)
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)


def test_local_days_follow_the_zone_across_daylight_saving_changes(engine):
    # Paris: UTC+1 in winter, UTC+2 from 2026-03-29 01:00 UTC until 2026-10-25 01:00 UTC.
    offsets = dict(rollups.zone_offsets("Europe/Paris", 2026))
    assert offsets["2026-03-29T01:00:00.000000Z"] == 120
    assert offsets["2026-10-25T01:00:00.000000Z"] == 60
    assert rollups.zone_offsets("Asia/Kathmandu", 2026)[-1][1] == 345
    cases = {
        ("2026-03-28T22:59:59.000000Z", "Europe/Paris"): "2026-03-28",
        ("2026-03-28T23:00:00.000000Z", "Europe/Paris"): "2026-03-29",  # 23-hour day
        ("2026-03-29T21:59:59.000000Z", "Europe/Paris"): "2026-03-29",
        ("2026-03-29T22:00:00.000000Z", "Europe/Paris"): "2026-03-30",
        ("2026-10-25T22:59:59.000000Z", "Europe/Paris"): "2026-10-25",  # 25-hour day
        ("2026-10-25T23:00:00.000000Z", "Europe/Paris"): "2026-10-26",
        ("2026-06-01T18:14:59.000000Z", "Asia/Kathmandu"): "2026-06-01",
        ("2026-06-01T18:15:00.000000Z", "Asia/Kathmandu"): "2026-06-02",
        ("2026-06-01T04:59:59.000000Z", "America/New_York"): "2026-06-01",
        ("2026-01-01T04:59:59.000000Z", "America/New_York"): "2025-12-31",
        ("2026-01-01T00:00:00.000000Z", "UTC"): "2026-01-01",
    }
    # The database computes the same local day as Python, on SQLite and on PostgreSQL.
    column = sa.literal_column("t")
    with engine.connect() as conn:
        for (moment, zone), day in cases.items():
            assert rollups.local_day(moment, zone) == day, (moment, zone)
            query = sa.select(rollups.local_day_sql(conn.dialect.name, column, zone)).select_from(
                sa.select(sa.literal(moment).label("t")).subquery()
            )
            assert conn.execute(query).scalar_one() == day, (moment, zone)


def _days(engine, site_id: str) -> dict[str, int]:
    t = store.session_days
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.day, func.sum(t.c.sessions)).where(t.c.site_id == site_id).group_by(t.c.day)
        )
        return {day: int(n) for day, n in rows}


def test_a_time_zone_change_recounts_the_days_and_the_worker_catches_one_nobody_followed(
    config, engine, site, worker
):
    # Sessions at 10:00 … 11:57 UTC: one day in UTC; in Kiritimati (UTC+14) the ones from
    # 10:00 are on the next day, and in Honolulu (UTC-10) on the same one.
    drain(config, [session(site.id, n, minute=n * 3, click=True) for n in range(40)])
    assert _days(engine, site.id) == {"2026-03-01": 40}
    with engine.connect() as conn:
        assert rollups.zone_of(conn, site.id) == "UTC"

    # The settings page and `firsttag sites update` follow a change at once.
    update_settings(engine, site.id, time_zone="Pacific/Kiritimati")
    with engine.begin() as conn:
        assert rollups.sync_zone(conn, site.id) == ("Pacific/Kiritimati", True)
    assert _days(engine, site.id) == {"2026-03-02": 40}
    with engine.connect() as conn:
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)

    # A change nobody followed: the overview counts from the rows meanwhile (same numbers),
    # and the worker's next batch of the site recounts its days before adding its own.
    changed = update_settings(engine, site.id, time_zone="Pacific/Honolulu")
    _, day = resolve("custom", "Pacific/Honolulu", "2026-03-01", "2026-03-01")
    assert overview.totals(engine, changed, day, {}).sessions == 40
    assert _days(engine, site.id) == {"2026-03-02": 40}  # not yet recounted
    drain(config, [session(site.id, 100, minute=150, click=False)])
    with engine.connect() as conn:
        assert rollups.zone_of(conn, site.id) == "Pacific/Honolulu"
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
    assert _days(engine, site.id) == {"2026-03-01": 41}
    assert overview.totals(engine, changed, day, {}).sessions == 41


def test_the_longest_touch_values_in_any_script_are_stored_and_counted(
    config, engine, site, worker
):
    # Anyone with the site key may send them: a landing page and UTM values at their
    # length limits in a four-byte script, a conversion name too. Every rollup key holds
    # two such values; PostgreSQL refuses an index entry over 2,704 bytes, and a refused
    # row would make an accepted event a dead letter.
    def wide(n: int, seed: int) -> str:  # four bytes each in UTF-8, and no repeats to squeeze
        return "".join(chr(0x20000 + (i * 7919 + seed) % 40000) for i in range(n))

    url = (
        f"https://shop.example/{wide(1200, 1)}?utm_source={wide(300, 2)}"
        f"&utm_medium={wide(300, 3)}&utm_campaign={wide(300, 4)}"
    )
    data = {"sessionId": "long1", "visitorId": "vlong", "url": url, "bot": False}
    purchase = {
        "dedupKey": "track:long",
        "kind": "sale",
        "source": "track",
        "name": wide(255, 5),
        "visitorId": "vlong",
        "value": 100,
        "currency": "EUR",
        "occurredAt": at(30),
    }
    drain(config, [event("session", site.id, at(1), data)])
    drain(config, [event("conversion", site.id, at(30), purchase)])
    with engine.connect() as conn:
        stored_rows = conn.execute(
            select(func.count()).select_from(store.conversions).where(
                store.conversions.c.site_id == site.id
            )
        ).scalar_one()
        assert stored_rows == 1
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
        pages = conn.execute(
            select(store.touch_conversion_days.c.value).where(
                store.touch_conversion_days.c.site_id == site.id,
                store.touch_conversion_days.c.filter_dimension == "campaign",
                store.touch_conversion_days.c.dimension == "landing_page",
            )
        ).scalars().all()
    assert len(pages) == 1 and pages[0].startswith("/"), pages


def test_an_update_refunding_more_than_the_orders_value_refunds_its_value(
    config, engine, site, worker
):
    # The stored order keeps its first value (100.00 EUR); an update that reports a bigger
    # total and refunds all of it must not leave the revenue negative.
    big = order(site.id, "R", 5, "0002", "refunded", 33_554_439, value=33_554_439)
    drain(config, [order(site.id, "R", 5, "0001", "completed", 0)])
    drain(config, [big])
    with engine.connect() as conn:
        row = conn.execute(
            select(store.conversions.c.value, store.conversions.c.refunded).where(
                store.conversions.c.order_id == "R"
            )
        ).one()
        assert tuple(row) == (10_000, 10_000)
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
        t = store.conversion_days
        net = conn.execute(
            select(func.sum(t.c.value_high * rollups.SPLIT + t.c.value_low)).where(
                t.c.site_id == site.id
            )
        ).scalar_one()
    assert int(net) == 0


def test_a_customer_erased_twice_after_coming_back_is_erased_both_times(
    config, engine, site, worker
):
    # u1 signs up, is erased, signs up again with the same lead event, and is erased again:
    # both leads end anonymised under distinct keys (the second erasure used to collide
    # with the first's key, fail, and be dead-lettered, leaving the person's data).
    def lead(minute: int):
        data = {
            "dedupKey": 'lead:["u1","Sign Up"]',
            "kind": "lead",
            "source": "track",
            "name": "Sign Up",
            "customerId": "u1",
            "visitorId": "v1",
            "occurredAt": at(minute),
        }
        return event("conversion", site.id, at(minute), data)

    erase = event("erasure", site.id, at(2), {"externalId": "u1"})
    erase_again = event("erasure", site.id, at(4), {"externalId": "u1"})
    drain(config, [lead(1)])
    drain(config, [erase])
    drain(config, [lead(3)])
    drain(config, [erase_again])
    c = store.conversions
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.c.dedup_key, c.c.customer_id).where(c.c.site_id == site.id)
        ).all()
        assert rollups.stored(conn, site.id) == rollups.recount(conn, site.id)
    assert len(rows) == 2
    assert all(key.startswith("erased:") and who is None for key, who in rows)
    assert Redis.from_url(config.redis_url).xlen(DEAD_LETTER_KEY) == 0
