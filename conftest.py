"""Fixtures shared by tests/ and e2e/: real Redis, a real RQ worker, a real SQLite file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from firsttag import store
from firsttag.config import Config
from firsttag.ops.embedded_redis import EmbeddedRedis
from firsttag.sites import Site, create_site
from firsttag.web.app import create_app
from redis import Redis
from sqlalchemy import create_engine, inspect, text
from werkzeug.serving import make_server

from tests.support import WorkerProcess


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis server for the whole run (flushed before each test that uses it)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Config:
    """A config with its own SQLite file and an empty Redis."""
    Redis.from_url(redis_url).flushall()
    # FIRSTTAG_TEST_DATABASE_URL runs the same tests against PostgreSQL (emptied per test).
    database_url = os.environ.get("FIRSTTAG_TEST_DATABASE_URL")
    if database_url:
        # Every table, an older revision's too (a database kept from before an upgrade),
        # so the next connect migrates from nothing again.
        engine = create_engine(database_url)
        with engine.begin() as conn:
            for name in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
        engine.dispose()
    return Config(
        data_dir=tmp_path,
        database_url=database_url or f"sqlite:///{tmp_path / 'firsttag.db'}",
        redis_url=redis_url,
        secret_key="test-secret-" + tmp_path.name,
    )


@pytest.fixture
def app(config: Config) -> Any:
    """The real Flask app against the real Redis and SQLite."""
    return create_app(config)


@pytest.fixture
def client(app: Any) -> Any:
    """Flask test client of :func:`app`."""
    return app.test_client()


@pytest.fixture
def live_url(app: Any) -> Iterator[str]:
    """The real app over real HTTP on loopback, for snippets that use requests or curl."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def engine(app: Any) -> Any:
    """The app's SQLAlchemy engine."""
    return app.extensions["firsttag"].engine


@pytest.fixture
def site_and_secret(engine: Any) -> tuple[Site, str]:
    """A site allowing https://shop.example, with its secret key."""
    return create_site(engine, "Shop", ["https://shop.example"])


@pytest.fixture
def site(site_and_secret: tuple[Site, str]) -> Site:
    """The site of :func:`site_and_secret`."""
    return site_and_secret[0]


@pytest.fixture
def worker(config: Config, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A running RQ worker draining into ``config``'s store."""
    store.connect(config.database_url).dispose()
    proc = WorkerProcess(config, tmp_path / "worker.log")
    proc.start()
    yield proc
    proc.stop()
