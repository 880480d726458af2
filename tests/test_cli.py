"""The firsttag command line: sites create / list, secrets shown once and stored hashed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
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
    stub, script = site["tag"].split("\n")
    assert stub.startswith("<script>window.firsttag=function(f){")
    assert script == f'<script src="http://127.0.0.1:8000/t/{site["id"]}.js" async></script>'

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
    from firsttag.config import Config

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
        "firstPartyPath": None,
        "trackHistory": False,
        "countBrowserRevenue": False,
        "maxBrowserValue": 10_000_000,
        "browserRatePerMinute": None,
        "serverRatePerMinute": None,
        "readsRatePerMinute": None,
        "timeZone": "UTC",
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
    zoned = run_cli(
        "sites", "update", site["id"], "--time-zone", "Europe/Paris", "--data-dir", str(tmp_path)
    )
    assert json.loads(zoned.stdout)["settings"]["timeZone"] == "Europe/Paris"
    bad_zone = run_cli(
        "sites", "update", site["id"], "--time-zone", "Mars/Olympus", "--data-dir", str(tmp_path)
    )
    assert bad_zone.returncode == 2
    assert "time zone must be an IANA name" in bad_zone.stderr
    first_party = run_cli(
        "sites", "update", site["id"], "--first-party-path", "/ft", "--track-history",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    settings = json.loads(first_party.stdout)["settings"]
    assert (settings["firstPartyPath"], settings["trackHistory"]) == ("/ft", True)
    off = run_cli(
        "sites", "update", site["id"], "--first-party-path", "", "--data-dir", str(tmp_path)
    )
    assert json.loads(off.stdout)["settings"]["firstPartyPath"] is None
    for path in ("ft", "/ft/", "/f t", "/"):
        refused = run_cli(
            "sites", "update", site["id"], "--first-party-path", path, "--data-dir", str(tmp_path)
        )
        assert refused.returncode == 2 and "first-party path" in refused.stderr, path


def test_docs_api_md_is_generated_from_the_schemas():
    from pathlib import Path

    from firsttag.apispec.markdown import render

    committed = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    assert committed == render(), "docs/api.md is stale: run `firsttag apidocs > docs/api.md`"


def test_sites_create_prints_the_configured_public_url(tmp_path):
    import os

    def create(env_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "FIRSTTAG_PUBLIC_URL"}
        if env_url is not None:
            env["FIRSTTAG_PUBLIC_URL"] = env_url
        argv = ["sites", "create", "--name", "S", "--origin", "https://s.example", *args]
        return subprocess.run(
            [sys.executable, "-m", "firsttag.ops.cli", *argv, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    for env_url, args, expected in (
        ("https://tags.shop.example/", (), "https://tags.shop.example"),
        (None, ("--public-url", "https://t.example:8443/ft"), "https://t.example:8443/ft"),
        ("https://ignored.example", ("--public-url", "https://t.example"), "https://t.example"),
    ):
        created = create(env_url, *args)
        assert created.returncode == 0, created.stderr
        site = json.loads(created.stdout)
        assert site["tag"].endswith(f'\n<script src="{expected}/t/{site["id"]}.js" async></script>')
        assert site["installUrl"].startswith(f"{expected}/sites/{site['id']}/install?token=")

    for bad in ("javascript:alert(1)", "https://x.example/?a=1", "tags.example", "https://u:p@x"):
        refused = create(bad)
        assert refused.returncode != 0
        assert "public URL must look like https://" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_serve_defaults_its_public_url_to_the_address_it_listens_on():
    from firsttag.config import listen_url, public_url

    assert public_url(listen_url("127.0.0.1", 8000)) == "http://127.0.0.1:8000"
    assert public_url(listen_url("::1", 9000)) == "http://[::1]:9000"
