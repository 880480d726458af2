"""GET /t/<site>.js: the tag as served."""

from __future__ import annotations

from server import create_app
from server.config import Config


def test_tag_is_javascript_with_etag_and_cache_headers(client, site_and_secret):
    site, secret = site_and_secret
    response = client.get(f"/t/{site.id}.js")
    assert response.status_code == 200
    assert response.content_type == "application/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    body = response.get_data(as_text=True)
    assert f'"{site.site_key}"' in body
    assert secret not in body and "sk_" not in body
    assert body.endswith('"firsttag",false);')  # the global's name and consent mode
    assert "\n" not in body.strip()  # minified

    etag = response.headers["ETag"]
    cached = client.get(f"/t/{site.id}.js", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.get_data() == b""


def test_unknown_site_is_404_without_reflecting_the_request(client):
    probe = "st_0123456789ab"
    response = client.get(f"/t/{probe}.js")
    assert response.status_code == 404
    assert probe not in response.get_data(as_text=True)
    weird = client.get("/t/<script>alert(1)</script>.js")
    assert weird.status_code == 404
    assert "<script>" not in weird.get_data(as_text=True)


def test_server_values_are_escaped_for_javascript(tmp_path, config, site):
    hostile = Config(
        data_dir=tmp_path,
        database_url=config.database_url,
        redis_url=config.redis_url,
        secret_key=config.secret_key,
        public_url='https://x.example/"</script><script>alert(1)//',
    )
    body = create_app(hostile).test_client().get(f"/t/{site.id}.js").get_data(as_text=True)
    assert "</script>" not in body
    assert '\\"' in body or "\\u0022" in body
    assert "\\u003c/script\\u003e" in body


def test_tag_uses_the_request_host_unless_a_public_url_is_set(client, site):
    body = client.get(f"/t/{site.id}.js", base_url="http://tags.shop.example:8000").get_data(
        as_text=True
    )
    assert '"http://tags.shop.example:8000/api/v1"' in body


def test_tag_stays_within_its_gzip_budget_with_a_long_host(tmp_path, config):
    import gzip

    from server.sites import Settings, Site
    from server.tags import TAG_BUDGET_GZIP, render_tag

    site = Site(
        "st_0123456789ab",
        "x",
        "pk_" + "0" * 24,
        ("https://a.example",),
        "",
        Settings(global_name="shopMetricsCollector", consent_required=True),
    )
    body = render_tag(site, "https://tracking.subdomain.of-a-rather-long-shop-name.example.com")
    size = len(gzip.compress(body, 9))
    assert size <= TAG_BUDGET_GZIP, f"tag is {size} bytes gzip -9, budget {TAG_BUDGET_GZIP}"


def test_tag_never_blocks_the_page_or_polls(client, site):
    served = client.get(f"/t/{site.id}.js").get_data(as_text=True)
    for forbidden in (
        "preventDefault",
        "setInterval",
        "setTimeout",
        "document.write",
        "=>",
        "`",
        "let ",
        "const ",
    ):  # and ES5 only
        assert forbidden not in served, forbidden


def test_custom_global_name_and_tag_path(client, engine, site):
    from server.sites import update_settings

    update_settings(engine, site.id, global_name="shopMetrics", tag_path="/assets/app-3f9a.js")
    client.application.extensions["firsttag"].sites._cache.clear()  # skip the 10 s cache
    custom = client.get("/assets/app-3f9a.js")
    assert custom.status_code == 200
    assert custom.content_type.startswith("application/javascript")
    assert custom.get_data(as_text=True).endswith('"shopMetrics",false);')
    assert client.get("/assets/other.js").status_code == 404


def test_bad_site_settings_are_refused(engine, site):
    import pytest

    from server.sites import update_settings

    for bad in (
        {"global_name": "window"},
        {"global_name": "a-b"},
        {"tag_path": "/api/v1/x.js"},
        {"tag_path": "no-slash.js"},
    ):
        with pytest.raises(ValueError):
            update_settings(engine, site.id, **bad)
