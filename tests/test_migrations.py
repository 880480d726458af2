"""Schema migrations: fresh, adopted from older releases, once under concurrency, in sync.

Runs on SQLite, and on PostgreSQL when FIRSTTAG_TEST_DATABASE_URL names one
(scripts/test-postgres).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from firsttag import store

from tests.support import wait_until


def _last_schema_before_alembic() -> sa.MetaData:
    """The tables as create_all made them in the last release before Alembic (revision 0001)."""
    path = store.MIGRATIONS / "versions" / "0001_initial.py"
    spec = importlib.util.spec_from_file_location("firsttag_migration_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.schema


@pytest.fixture
def database_url(tmp_path):
    url = os.environ.get("FIRSTTAG_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path / 'firsttag.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE "{name}" CASCADE'))
    engine.dispose()
    return url


def _add_site(conn) -> None:
    """Site st_1 (UTC, default settings) as an older release stored it."""
    conn.execute(
        sa.text(
            "INSERT INTO sites (id, name, site_key, secret_hash, origins, settings, "
            "created_at) VALUES ('st_1', 'Shop', 'pk_1', 'h', "
            "'[\"https://shop.example\"]', '{}', '2026-11-01T00:00:00.000000Z')"
        )
    )


def _rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()  # noqa: S608


def test_a_fresh_database_is_migrated_to_head_and_equals_the_tables_in_store(database_url):
    # A column or table added to store.py without a revision fails here.
    engine = store.connect(database_url)
    assert store.current_revision(engine) == store.head_revision()
    assert store.schema_differences(engine) == []
    engine.dispose()


def test_a_database_of_the_first_release_is_upgraded_keeping_its_rows(database_url):
    old = sa.MetaData()  # the sites and conversions tables as the first release made them
    sa.Table(
        "sites",
        old,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site_key", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("origins", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    sa.Table(
        "conversions",
        old,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("dedup_key", sa.String(512), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
        sa.Column("occurred_at", sa.String(32), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("site_id", "dedup_key", name="uq_conversions_site_dedup"),
    )
    engine = sa.create_engine(database_url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO sites VALUES ('st_000000000001', 'Shop', 'pk_1', 'h', '[]', 't')")
        )
        conn.execute(
            sa.text(
                "INSERT INTO conversions (site_id, dedup_key, source, name, occurred_at, "
                "received_at) VALUES ('st_000000000001', 'order:1', 'order', 'Purchase', "
                "'2026-01-02T03:04:05.000000Z', '2026-01-02T03:04:05.000000Z')"
            )
        )
    engine.dispose()

    engine = store.connect(database_url)
    assert store.current_revision(engine) == store.head_revision()
    with engine.connect() as conn:
        site = conn.execute(sa.select(store.sites)).mappings().one()
        conversion = conn.execute(sa.select(store.conversions)).mappings().one()
    assert (site["name"], site["settings"]) == ("Shop", "{}")  # added with its default
    assert (conversion["dedup_key"], conversion["kind"]) == ("order:1", "conversion")
    assert _rows(engine, "sessions") == 0  # tables it lacked exist now
    engine.dispose()


def test_a_database_made_by_create_all_is_adopted_without_touching_its_rows(database_url):
    engine = sa.create_engine(database_url)
    # What every release before Alembic did: create_all of that release's tables.
    _last_schema_before_alembic().create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            store.customers.insert().values(
                site_id="st_1", external_id="c1", name="Ann", created_at="t"
            )
        )
    engine.dispose()
    engine = store.connect(database_url)
    assert store.current_revision(engine) == store.head_revision()
    assert store.schema_differences(engine) == []
    assert _rows(engine, "customers") == 1
    engine.dispose()


def _waiting_for_the_lock(engine, lockfile):
    """How many processes wait for the migration lock that this test holds."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar()
    inode = os.stat(lockfile).st_ino
    with open("/proc/locks") as locks:  # blocked flock() calls are listed with "->"
        return sum("->" in line and f":{inode} " in line for line in locks)


def test_processes_starting_together_migrate_once_and_all_come_up(database_url, tmp_path):
    env = dict(os.environ, FIRSTTAG_DATABASE_URL=database_url, FIRSTTAG_SECRET_KEY="k")
    engine = store.connect(database_url, migrate=False)
    argv = [sys.executable, "-m", "firsttag.ops.cli", "migrate", "--data-dir", str(tmp_path)]
    lockfile = f"{engine.url.database}.migrate-lock"
    # Hold the lock while six processes start, so they all meet it at once, then let go.
    with store.migration_lock(engine):
        processes = [
            subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(6)
        ]
        wait_until(
            lambda: _waiting_for_the_lock(engine, lockfile) == 6, 60, "six waiting processes"
        )
    results = [(p.wait(120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0] * 6, [err[-500:] for _, _, err in results]
    upgraded = [out for _, out, _ in results if "upgraded nothing ->" in out]
    assert len(upgraded) == 1, [out for _, out, _ in results]
    assert _rows(engine, "alembic_version") == 1
    assert store.schema_differences(engine) == []
    engine.dispose()


def test_a_database_migrated_by_a_newer_release_is_left_as_it_is(database_url):
    # Rolling deploys upgrade workers first: an older web process must still start.
    engine = store.connect(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()
    engine = store.connect(database_url)
    assert store.current_revision(engine) == "from_the_future"
    engine.dispose()


def test_the_password_of_the_database_is_not_printed(tmp_path, database_url):
    url = "postgresql+psycopg://firsttag:hunter2secret@127.0.0.1:1/nowhere"
    done = subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", "migrate", "--data-dir", str(tmp_path)],
        env=dict(os.environ, FIRSTTAG_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "hunter2secret" not in done.stdout + done.stderr


def test_upgrading_to_touches_classifies_the_visits_and_counts_the_rollups_already_stored(
    database_url,
):
    # A store from before revisions 0004 (rollups) and 0005 (touches), with a visit from a
    # newsletter and a sale on it: after the upgrade the overview and the channel reports
    # see them without waiting for new traffic.
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(store._alembic_config(conn), "0003")
        _add_site(conn)
        conn.execute(
            sa.text(
                "INSERT INTO sessions (site_id, session_id, visitor_id, url, referrer, "
                "user_agent, bot, created_at) VALUES ('st_1', 's1', 'v1', "
                "'https://shop.example/p?utm_source=Newsletter&utm_medium=email"
                "&utm_campaign=bf', 'https://shop.example/', 'Mozilla/5.0', false, "
                "'2026-11-01T10:00:00.000000Z')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO conversions (site_id, dedup_key, kind, source, name, value, "
                "currency, occurred_at, received_at) VALUES ('st_1', 'sale:i1', 'sale', "
                "'track', 'Purchase', 4900, 'EUR', '2026-11-01T10:05:00.000000Z', "
                "'2026-11-01T10:05:00.000000Z')"
            )
        )
    engine.dispose()
    engine = store.connect(database_url)
    assert store.current_revision(engine) == store.head_revision()
    with engine.connect() as conn:
        touch = conn.execute(
            sa.text("SELECT channel, source, medium, campaign, landing_page FROM sessions")
        ).one()
        rolled = conn.execute(
            sa.text(
                "SELECT day, SUM(conversions) FROM conversion_days WHERE site_id = 'st_1' "
                "GROUP BY day"
            )
        ).all()
        zone = conn.execute(sa.text("SELECT zone FROM rollup_zones WHERE site_id = 'st_1'"))
        zone = zone.scalar()
    assert tuple(touch) == ("email", "newsletter", "email", "bf", "/p")
    assert [tuple(r) for r in rolled] == [("2026-11-01", 1)]
    assert zone == "UTC"
    engine.dispose()


def test_upgrading_to_daily_rollups_cuts_touch_values_too_long_to_key_a_rollup(database_url):
    # A visit stored before touch values were limited in bytes: 700 four-byte characters
    # of landing page and campaign. Revision 0007 keys rollups by two such values, which
    # PostgreSQL could not index; the upgrade cuts them and counts the visit.
    page = "/" + "".join(chr(0x20000 + i * 37) for i in range(700))
    campaign = "".join(chr(0x21000 + i * 31) for i in range(250))
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(store._alembic_config(conn), "0006")
        _add_site(conn)
        conn.execute(
            sa.text(
                "INSERT INTO sessions (site_id, session_id, visitor_id, url, user_agent, bot, "
                "created_at, channel, campaign, landing_page) VALUES ('st_1', 's1', 'v1', "
                "'https://shop.example/', 'Mozilla/5.0', false, '2026-11-01T10:00:00.000000Z', "
                "'email', :campaign, :page)"
            ),
            {"campaign": campaign, "page": page},
        )
    engine.dispose()
    engine = store.connect(database_url)
    with engine.connect() as conn:
        stored_page, stored_campaign = conn.execute(
            sa.text("SELECT landing_page, campaign FROM sessions")
        ).one()
        counted = conn.execute(
            sa.text(
                "SELECT SUM(sessions) FROM touch_session_days WHERE filter_dimension = "
                "'campaign' AND dimension = 'landing_page'"
            )
        ).scalar()
    assert len(stored_page.encode()) <= 1000 and page.startswith(stored_page)
    assert len(stored_campaign.encode()) <= 255 and campaign.startswith(stored_campaign)
    assert counted == 1
    engine.dispose()
