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
    assert "w.firsttag = {" in body

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
    assert '"http://tags.shop.example:8000"' in body
