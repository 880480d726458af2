"""The dashboard in Chromium: log in, see the sites, change a setting; axe-core finds no
serious accessibility violation, the CSP blocks nothing, and a phone-wide screen works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from e2e.conftest import Firsttag

PASSWORD = "e2e dashboard password"


def cli(firsttag: Firsttag, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
    done = subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", *args, "--data-dir", str(firsttag.data_dir)],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def owner(firsttag: Firsttag) -> dict[str, Any]:
    """A site of its own (other e2e tests share the demo shop) and its owner."""
    site = json.loads(
        cli(firsttag, "sites", "create", "--name", "Dashboard shop", "--origin", "https://d.test")
    )
    cli(
        firsttag,
        "users",
        "create",
        "--email",
        "owner@d.test",
        "--site",
        site["id"],
        "--role",
        "owner",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    return site


def serious(page: Any) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("width", [1280, 375])
def test_log_in_see_sites_change_a_setting(browser, firsttag, owner, width):
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )

    page.goto(firsttag.url + "/")
    assert page.url == f"{firsttag.url}/login"
    assert serious(page) == []
    page.get_by_label("Email").fill("owner@d.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.wait_for_url(f"{firsttag.url}/sites")
    row = page.get_by_role("row").filter(has_text="Dashboard shop")
    assert row.get_by_role("cell").first.inner_text() == "0"  # sessions today
    assert serious(page) == []
    assert _fits(page), page.evaluate(WIDEST)

    row.get_by_role("link", name="Dashboard shop").click()  # a site opens on its overview
    page.wait_for_url(f"{firsttag.url}/sites/{owner['id']}/overview")
    page.get_by_role("link", name="Settings", exact=True).click()
    page.wait_for_url(f"{firsttag.url}/sites/{owner['id']}/settings")
    assert serious(page) == []
    assert _fits(page), "the settings page scrolls sideways"
    page.get_by_label("Attribution window (days)").fill("30")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_label("Consent mode").check()
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()

    stored = next(s for s in json.loads(cli(firsttag, "sites", "list")) if s["id"] == owner["id"])[
        "settings"
    ]
    assert stored["attributionWindowDays"] == 30
    assert stored["timeZone"] == "Europe/Paris"
    assert stored["consentRequired"] is True

    # Keyboard only: the skip link is the first stop and leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{firsttag.url}/login")
    assert blocked == []
    context.close()


WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
  .slice(0, 8).join(', ')"""


def _fits(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
