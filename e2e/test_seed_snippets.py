"""The ClickLens seed's snippets, verbatim but for host and key, against `firsttag serve`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from tests.support import wait_until


def new_session_key(firsttag) -> str:
    """Register a session the way the tag does and return its cl_sk."""
    import secrets

    response = requests.post(
        firsttag.url + "/api/v1/sessions",
        json={
            "siteKey": firsttag.site["siteKey"],
            "visitorId": secrets.token_hex(16),
            "sessionId": secrets.token_hex(16),
        },
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()["sessionKey"]


def assert_verified(firsttag, session_key: str) -> None:
    wait_until(
        lambda: (
            (r := firsttag.api(f"/api/v1/sessions/{session_key}")).ok and r.json()["verifiedAt"]
        ),
        20,
        "the session to be verified",
    )


def test_gtm_custom_html_xhr_snippet(browser, firsttag, shop):
    context = browser.new_context()
    page = context.new_page()
    page.goto(shop.url + "/")
    session_key = wait_until(lambda: page.evaluate("sessionStorage.getItem('cl_sk')"), 15, "cl_sk")
    with page.expect_response("**/api/v1/sessions/convert") as verified:
        page.goto(shop.url + "/gtm-thank-you")
    assert verified.value.status == 200
    assert_verified(firsttag, session_key)
    context.close()


def test_python_snippet(firsttag):
    session_key = new_session_key(firsttag)
    # Verbatim from the seed, with the host and key replaced.
    response = requests.post(  # noqa: S113 (the seed's snippet has no timeout)
        f"{firsttag.url}/api/v1/sessions/convert",
        json={"sessionKey": session_key},
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {firsttag.site['siteKey']}",
        },
    )
    assert response.status_code == 200
    assert_verified(firsttag, session_key)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_snippet(firsttag):
    session_key = new_session_key(firsttag)
    command = f"""curl -X POST {firsttag.url}/api/v1/sessions/convert \\
-H "Content-Type: application/json" \\
-H "Authorization: Bearer {firsttag.site["siteKey"]}" \\
-d '{{"sessionKey": "{session_key}"}}' -s -o /dev/null -w '%{{http_code}}'"""
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.stdout == "200"
    assert_verified(firsttag, session_key)


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_node_snippet(firsttag):
    session_key = new_session_key(firsttag)
    script = """const sessionKey = process.argv[1];
await fetch('https://your-domain.clicklens.io/api/v1/sessions/convert', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_SITE_KEY'
},
body: JSON.stringify({ sessionKey })
}).then(r => console.log(r.status));"""
    script = script.replace("https://your-domain.clicklens.io", firsttag.url)
    script = script.replace("YOUR_SITE_KEY", firsttag.site["siteKey"])
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script, session_key],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "200", result.stderr
    assert_verified(firsttag, session_key)
