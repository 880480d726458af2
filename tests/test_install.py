"""The per-site install page: signed link or secret key; publishable values only."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import replace

import pytest
from firsttag.sites import create_site
from firsttag.tag.install import install_link
from firsttag.web.app import create_app


def test_install_page_by_signed_link_shows_everything_but_the_secret(client, config, engine):
    site, secret = create_site(engine, "<script>alert(1)</script> Shop", ["https://shop.example"])
    link = install_link(site, "http://localhost", config.secret_key)
    response = client.get(link.removeprefix("http://localhost"))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert secret not in page and not re.search(r"sk_[0-9a-f]{8,}", page)
    assert "<script>alert(1)</script>" not in page  # the site name is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Shop" in page
    tag = client.get(f"/t/{site.id}.js").get_data()
    sri = "sha384-" + base64.b64encode(hashlib.sha384(tag).digest()).decode()
    shown = html.unescape(page)  # what a person copies from the page
    assert f'integrity="{sri}" crossorigin="anonymous" async></script>' in shown
    for path in ("custom-html", "template.tpl", "container.json"):
        assert f"/gtm/{site.id}/{path}" in page
    assert 'name="visitorId"' in page and site.site_key in page
    for example in (
        "/api/webhooks/orders",
        "/api/v1/track/lead",
        "/api/v1/track/sale",
        "/api/v1/conversions",
        "curl -X POST",
        "requests.post",
        "await fetch",
    ):
        assert example in page
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_install_page_needs_the_secret_key_or_a_valid_link(client, config, site_and_secret, engine):
    site, secret = site_and_secret
    assert client.get(f"/sites/{site.id}/install").status_code == 401
    ok = client.get(f"/sites/{site.id}/install", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    other, _ = create_site(engine, "Other", ["https://other.example"])
    foreign = install_link(other, "", config.secret_key)
    assert (
        client.get(f"/sites/{site.id}/install?token={foreign.split('token=')[1]}").status_code
        == 404
    )
    assert client.get(f"/sites/{site.id}/install?token=forged").status_code == 401
    pk = client.get(
        f"/sites/{site.id}/install", headers={"Authorization": f"Bearer {site.site_key}"}
    )
    assert pk.status_code == 403


@pytest.mark.parametrize(
    "public",
    ["https://tags.shop.example", None],  # None: the default, http://127.0.0.1:8000
)
def test_install_page_uses_the_configured_url_whatever_the_host(config, site_and_secret, public):
    site, secret = site_and_secret
    app = create_app(replace(config, public_url=public) if public else config)
    public = public or "http://127.0.0.1:8000"
    client = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    tag = client.get(f"/t/{site.id}.js", base_url="http://evil.example").get_data()
    sri = "sha384-" + base64.b64encode(hashlib.sha384(tag).digest()).decode()
    for claimed in (
        {"base_url": "http://evil.example"},
        {"headers": {**auth, "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}},
    ):
        claimed.setdefault("headers", auth)
        page = html.unescape(
            client.get(f"/sites/{site.id}/install", **claimed).get_data(as_text=True)
        )
        assert "evil" not in page
        assert f'<script src="{public}/t/{site.id}.js" integrity="{sri}"' in page
        for path in (
            f"/gtm/{site.id}/custom-html",
            "/api/webhooks/orders",
            "/api/v1/conversions",
        ):
            assert public + path in page, path
