"""The tag's fast path (web/tagfront.py) answers exactly as Flask's tag route does."""

from __future__ import annotations

import io

import pytest
from firsttag import metrics
from firsttag.sites import Settings, create_site, update_settings
from firsttag.web.tagfront import TagFront


def _get(wsgi, path: str, **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "HTTP_HOST": "127.0.0.1",
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    answered: list = []
    body = b"".join(wsgi(environ, lambda status, hs, exc=None: answered.append((status, hs))))
    status, header_list = answered[0]
    found = dict(header_list)
    found.pop("Date", None)  # the clock
    return status, found, body


@pytest.fixture
def front(app) -> TagFront:
    assert isinstance(app.wsgi_app, TagFront)  # no trusted proxies in the test config
    return app.wsgi_app


def test_the_front_answers_like_flasks_tag_route(app, front, engine):
    site, _ = create_site(engine, "Shop", ["https://shop.example"], Settings(tag_path="/js/a.js"))
    flask = front.app  # the Flask app behind the front: today's route, make_conditional
    etag = _get(flask, f"/t/{site.id}.js")[1]["ETag"]
    conditions = [
        {},
        {"If-None-Match": etag},
        {"If-None-Match": f"W/{etag}"},
        {"If-None-Match": f'"nope", {etag}'},
        {"If-None-Match": "*"},
        {"If-None-Match": '"stale"'},
        {"If-None-Match": "garbage without quotes"},
    ]
    for path in (f"/t/{site.id}.js", "/js/a.js", "/t/st_0123456789ab.js", "/js/none.js"):
        for headers in conditions:
            assert _get(front, path, **headers) == _get(flask, path, **headers), (path, headers)


def test_a_tag_get_skips_flasks_dispatch_but_is_counted_and_logged(app, front, site, caplog):
    dispatched: list[str] = []
    app.before_request(lambda: dispatched.append("flask"))

    def count() -> float:
        return metrics.REQUESTS.labels("/t/<name>.js", "GET", "200")._value.get()

    before = count()
    with caplog.at_level("INFO", logger="firsttag.access"):
        status, headers, body = _get(app.wsgi_app, f"/t/{site.id}.js")
    assert status == "200 OK" and site.site_key.encode() in body
    assert dispatched == []  # answered by the prepared response
    assert count() == before + 1
    line = [r for r in caplog.records if r.name == "firsttag.access"][-1]
    assert line.fields["path"] == f"/t/{site.id}.js" and line.fields["status"] == 200
    assert line.fields["site"] == site.id
    # Anything else still goes through Flask.
    assert _get(app.wsgi_app, "/healthz")[0] == "200 OK" and dispatched == ["flask"]


def test_a_settings_change_serves_the_new_tag_at_once(app, front, engine, site):
    first = _get(front, f"/t/{site.id}.js")
    update_settings(engine, site.id, consent_required=True)
    app.extensions["firsttag"].sites.forget(site.id)
    second = _get(front, f"/t/{site.id}.js")
    assert second[1]["ETag"] != first[1]["ETag"]
    assert second[2].endswith(b",true);")
    assert _get(front, f"/t/{site.id}.js", **{"If-None-Match": first[1]["ETag"]})[0] == "200 OK"
