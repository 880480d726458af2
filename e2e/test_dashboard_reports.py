"""The report pages in Chromium against `firsttag serve`: numbers on the page, a breakdown
click filters every panel and is in the URL, the back button, a live new conversion,
axe-core with no serious violation, the CSP blocking nothing; screenshots for docs/."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import requests

from e2e.conftest import Firsttag
from e2e.test_dashboard_core import PASSWORD, cli, serious
from tests.support import wait_until

#: Where the dashboard tests save screenshots: docs/screenshots/ with FIRSTTAG_SCREENSHOTS=1
#: (to refresh the README's pictures), else a temporary folder, so that running the tests
#: never changes the checkout.
SHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("FIRSTTAG_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "firsttag-screenshots"
)


@pytest.fixture(scope="module")
def reports_site(firsttag: Firsttag) -> dict[str, Any]:
    """A site of its own with a viewer, and its secret key for the server API."""
    site = json.loads(
        cli(firsttag, "sites", "create", "--name", "Reports shop", "--origin", "https://r.test")
    )
    cli(firsttag, "users", "create", "--email", "viewer@r.test", "--site", site["id"],
        "--role", "viewer", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    return site


def report(firsttag: Firsttag, site: dict[str, Any], body: dict[str, Any]) -> None:
    answer = requests.post(
        f"{firsttag.url}/api/v1/conversions",
        json=body,
        headers={"Authorization": f"Bearer {site['secretKey']}"},
        timeout=10,
    )
    assert answer.status_code in (200, 201, 202), answer.text


def tile(page: Any, name: str) -> str:
    return page.locator(f'[data-tile="{name}"] .tile-value').first.inner_text()


def test_overview_filters_back_button_live_conversions(browser, firsttag, reports_site):
    site = reports_site
    for n, (name, value) in enumerate(
        [("Pro plan", 4900), ("Pro plan", 4900), ("Basic plan", 1900), ("Newsletter", None)]
    ):
        body = {"name": name, "order_id": f"e2e-{n}", "visitor_id": f"visitor{n}"}
        if value:
            body.update(value=value, currency="EUR")
        report(firsttag, site, body)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{firsttag.url}/sites/{site['id']}/overview")
    page.get_by_label("Email").fill("viewer@r.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/sites/{site['id']}/overview")

    def sales_shown() -> bool:
        page.reload()
        return tile(page, "sales") == "3"

    wait_until(sales_shown, 30, "the worker to store the sales")
    assert tile(page, "revenue") == "EUR 117.00"
    assert serious(page) == []  # (the screenshot: test_dashboard_channels, with channels)

    # A breakdown click narrows every panel, and the filter is in the URL.
    overview_url = page.url
    page.locator('table[data-dimension="name"]').get_by_role("link", name="Pro plan").click()
    page.wait_for_url("**name=Pro+plan**")
    assert tile(page, "sales") == "2"
    assert tile(page, "revenue") == "EUR 98.00"
    names = page.locator('table[data-dimension="name"] tbody th').all_inner_texts()
    assert names == ["Pro plan"]
    assert page.locator('[data-step="sales"] .funnel-count').inner_text() == "2"
    assert serious(page) == []
    # Shareable: the same URL in a fresh tab shows the same filtered page.
    shared = context.new_page()
    shared.goto(page.url)
    assert tile(shared, "sales") == "2"
    shared.close()
    page.go_back()
    page.wait_for_url(overview_url)
    assert tile(page, "sales") == "3"

    # Live: a conversion reported now appears on the open Conversions page, no reload.
    page.get_by_role("link", name="Conversions", exact=True).click()
    page.wait_for_url(f"**/sites/{site['id']}/conversions")
    assert page.locator("#conversions tbody tr").count() == 4
    assert serious(page) == []
    report(firsttag, site, {"name": "Enterprise plan", "order_id": "e2e-live", "value": 99900,
                            "currency": "EUR"})  # fmt: skip
    page.locator("#conversions tbody tr").filter(has_text="Enterprise plan").wait_for(
        timeout=30_000
    )
    assert page.locator("#conversions tbody tr").count() == 5
    assert page.locator("#conversions tbody tr").first.inner_text().count("Enterprise plan") == 1

    # A row opens its detail.
    page.locator("#conversions tbody tr").first.get_by_role("link").first.click()
    page.get_by_role("heading", name="What was reported").wait_for()
    assert "EUR 999.00" in page.content()
    assert serious(page) == []
    assert blocked == []
    context.close()
