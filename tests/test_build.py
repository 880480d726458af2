"""firsttag build: the same bytes as the server, hashed, compressed, described, reproducible."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import replace

import brotli
from firsttag import store
from firsttag.web.app import create_app

from tests.support import config_env

BASE = "https://tags.shop.example"


def run(config, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the test's configuration (SQLite or PostgreSQL, as the fixture chose)."""
    return subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=config_env(config),
    )


def test_build_matches_the_server_and_is_reproducible(tmp_path, config, site):
    from firsttag.tag.render import TAG_BUDGET_GZIP

    env_dir = str(config.data_dir)
    first = run(
        config, "build", "--out", str(tmp_path / "a"), "--base-url", BASE, "--data-dir", env_dir
    )
    assert first.returncode == 0, first.stderr
    assert f"{site.id}  raw" in first.stdout and "gzip" in first.stdout
    again = run(
        config, "build", "--out", str(tmp_path / "b"), "--base-url", BASE, "--data-dir", env_dir
    )
    assert again.returncode == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert files_a == files_b
    for rel in files_a:
        if (tmp_path / "a" / rel).is_file():
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel

    folder = tmp_path / "a" / site.id
    tag = (folder / "tag.js").read_bytes()
    server = create_app(replace(config, public_url=BASE)).test_client()
    served = server.get(f"/t/{site.id}.js", base_url="http://other.example").get_data()
    assert tag == served  # byte-identical to GET /t/<id>.js
    hashed = folder / f"tag.{hashlib.sha256(tag).hexdigest()[:16]}.js"
    assert hashed.read_bytes() == tag
    assert gzip.decompress((folder / "tag.js.gz").read_bytes()) == tag
    assert brotli.decompress((hashed.with_name(hashed.name + ".br")).read_bytes()) == tag

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    entry = manifest["sites"][site.id]
    assert entry["gzip"] == len((folder / "tag.js.gz").read_bytes()) <= TAG_BUDGET_GZIP
    for name, info in entry["files"].items():
        data = (folder / name).read_bytes()
        digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
        assert info == {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "integrity": f"sha384-{digest}",
        }
    assert set(entry["files"]) >= {"gtm/custom-html.html", "gtm/template.tpl", "gtm/container.json"}


def test_build_fails_clearly_over_budget_and_for_unknown_sites(tmp_path, config, site):
    over = run(
        config,
        "build",
        "--out",
        str(tmp_path),
        "--budget",
        "100",
        "--data-dir",
        str(config.data_dir),
    )
    assert over.returncode == 1
    assert f"over the 100 B gzip budget: {site.id}" in over.stderr
    unknown = run(
        config,
        "build",
        "--out",
        str(tmp_path),
        "--site",
        "st_000000000000",
        "--data-dir",
        str(config.data_dir),
    )
    assert unknown.returncode == 2 and "no such site" in unknown.stderr


def test_a_database_from_an_older_version_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the sites table as the first release made it
        db.execute(
            "CREATE TABLE sites (id VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL,"
            " site_key VARCHAR(64) NOT NULL, secret_hash VARCHAR(64) NOT NULL,"
            " origins TEXT NOT NULL, created_at VARCHAR(32) NOT NULL)"
        )
        db.execute("INSERT INTO sites VALUES ('st_000000000001', 'Old', 'pk_1', 'h', '[]', 't')")
    engine = store.connect(f"sqlite:///{path}")
    from firsttag.sites import list_sites

    (old,) = list_sites(engine)
    assert old.name == "Old" and old.settings.attribution_window_days == 7
