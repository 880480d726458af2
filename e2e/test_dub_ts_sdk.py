"""Dub's TypeScript SDK, run by Node, against `firsttag serve`: seed 004's trackLead verbatim.

A visitor lands on the shop with ``?dub_id=…`` in real Chromium; the tag sets the
``dub_id`` cookie. The site's back end then runs Dub's Clerk guide's ``trackLead`` server
action (``e2e/dub-sdk/track-lead.ts``, copied verbatim from the seed) with that cookie,
through Dub's own SDK (npm ``dub``, pinned by ``e2e/dub-sdk/package-lock.json``) whose
client has only its key and ``serverURL`` changed (``e2e/dub-sdk/lib/dub.mjs``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until

SDK_DIR = Path(__file__).parent / "dub-sdk"
SDK_VERSION = json.loads((SDK_DIR / "package.json").read_text())["dependencies"]["dub"]

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")),
    reason="node and npm are not installed (.ci/run installs Debian's nodejs and npm)",
)


@pytest.fixture(scope="session")
def dub_sdk() -> Path:
    """``npm ci`` once, unless node_modules already holds exactly the locked SDK."""
    installed = SDK_DIR / "node_modules" / "dub" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != SDK_VERSION:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SDK_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return SDK_DIR


def run_track_lead(sdk_dir: Path, server_url: str, secret: str, dub_id: str, user_id: str) -> Any:
    env = {
        **os.environ,
        "DUB_API_KEY": secret,
        "DUB_SERVER_URL": server_url,
        "DUB_ID": dub_id,
        "USER_ID": user_id,
    }
    result = subprocess.run(
        ["node", "run-track-lead.mjs"],
        cwd=sdk_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_seed_004_track_lead_with_dubs_typescript_sdk(browser, firsttag, shop, dub_sdk):
    click = "clk_ts_" + secrets.token_hex(4)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shop.url}/?dub_id={click}")
    wait_until(
        lambda: any(c["name"] == "dub_id" for c in context.cookies()), 10, "the dub_id cookie"
    )
    dub_id = next(c["value"] for c in context.cookies() if c["name"] == "dub_id")
    context.close()
    assert dub_id == click

    user_id = "user_" + secrets.token_hex(4)
    ran = run_track_lead(
        dub_sdk, f"{firsttag.url}/api/v1", firsttag.site["secretKey"], dub_id, user_id
    )
    # The action took the success path: the SDK accepted firsttag's answer as Dub's.
    assert ran["errors"] == [], ran["errors"]
    assert ran["result"] == {"ok": True}
    assert ran["cookiesSet"] == [
        {"name": "dub_id", "value": "", "expires": "1970-01-01T00:00:00.000Z"}
    ]
    assert ran["clerkUpdates"] == [
        {"id": user_id, "data": {"publicMetadata": {"dubClickId": dub_id}}}
    ]

    def stored_lead() -> dict[str, Any] | None:
        answer = firsttag.api("/api/v1/conversions?limit=500")
        assert answer.status_code == 200, answer.text
        for row in answer.json()["data"]:
            if row["kind"] == "lead" and row["customerExternalId"] == user_id:
                return row
        return None

    lead = wait_until(stored_lead, 20, "the lead to be stored")
    assert (lead["name"], lead["clickId"]) == ("Sign Up", dub_id)


def test_a_bad_key_is_dubs_typed_unauthorized_error(firsttag, dub_sdk):
    ran = run_track_lead(
        dub_sdk, f"{firsttag.url}/api/v1", "sk_not_a_key", "clk_x", "user_" + secrets.token_hex(4)
    )
    assert ran["result"]["ok"] is False
    # The seed's catch logs the SDK's typed error: Unauthorized, not a generic SDK error.
    [logged] = ran["errors"]
    assert logged.startswith("Error in trackLead: Unauthorized:"), logged
    assert ran["clerkUpdates"] == []
