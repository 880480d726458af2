"""The firsttag command line: sites create / list, secrets shown once and stored hashed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_sites_create_prints_keys_once_and_stores_only_a_hash(tmp_path):
    created = run_cli(
        "sites",
        "create",
        "--name",
        "Shop",
        "--origin",
        "https://Shop.example/",
        "--origin",
        "http://localhost:3000",
        "--data-dir",
        str(tmp_path),
    )
    assert created.returncode == 0, created.stderr
    site = json.loads(created.stdout)
    assert site["id"].startswith("st_")
    assert site["siteKey"].startswith("pk_")
    assert site["secretKey"].startswith("sk_")
    assert site["origins"] == ["https://shop.example", "http://localhost:3000"]
    assert site["tag"] == f'<script src="http://127.0.0.1:8000/t/{site["id"]}.js" async></script>'

    raw = (tmp_path / "firsttag.db").read_bytes()
    assert site["secretKey"].encode() not in raw
    with sqlite3.connect(tmp_path / "firsttag.db") as db:
        (stored,) = db.execute("SELECT secret_hash FROM sites").fetchone()
    assert len(stored) == 64 and stored != site["secretKey"]

    listed = run_cli("sites", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0
    assert "sk_" not in listed.stdout
    assert [s["id"] for s in json.loads(listed.stdout)] == [site["id"]]


def test_sites_create_rejects_bad_origins_clearly(tmp_path):
    bad = run_cli(
        "sites",
        "create",
        "--name",
        "X",
        "--origin",
        "shop.example/path",
        "--data-dir",
        str(tmp_path),
    )
    assert bad.returncode == 2
    assert "origin must look like https://shop.example" in bad.stderr


def test_the_server_secret_is_made_once_and_kept(tmp_path, monkeypatch):
    from server.config import Config

    monkeypatch.delenv("FIRSTTAG_SECRET_KEY", raising=False)
    first = Config.from_env(tmp_path).secret_key
    assert len(first) >= 48
    assert Config.from_env(tmp_path).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    # No temporary secret left behind; the database is created empty and owner-only.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["firsttag.db", "secret_key"]


def test_site_settings_from_the_cli(tmp_path):
    created = run_cli(
        "sites",
        "create",
        "--name",
        "S",
        "--origin",
        "https://s.example",
        "--attribution-days",
        "14",
        "--data-dir",
        str(tmp_path),
    )
    site = json.loads(created.stdout)
    assert site["settings"] == {
        "attributionWindowDays": 14,
        "countingStatuses": ["completed"],
        "globalName": "firsttag",
        "tagPath": None,
        "consentRequired": False,
    }
    updated = run_cli(
        "sites",
        "update",
        site["id"],
        "--counting-status",
        "completed",
        "--counting-status",
        "processing",
        "--data-dir",
        str(tmp_path),
    )
    assert updated.returncode == 0, updated.stderr
    settings = json.loads(updated.stdout)["settings"]
    assert settings["attributionWindowDays"] == 14
    assert settings["countingStatuses"] == ["completed", "processing"]
    bad = run_cli(
        "sites", "update", site["id"], "--attribution-days", "0", "--data-dir", str(tmp_path)
    )
    assert bad.returncode == 2


def test_docs_api_md_is_generated_from_the_schemas():
    from pathlib import Path

    from server.apidocs import render

    committed = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    assert committed == render(), "docs/api.md is stale: run `firsttag apidocs > docs/api.md`"
