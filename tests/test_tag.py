"""GET /t/<site>.js: the tag as served."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from firsttag.config import Config
from firsttag.web.app import create_app


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


PUBLIC = "https://tags.shop.example"
#: What an attacker may send instead of the server's name: another host, a port, an IP,
#: IPv6, and the proxy headers a misconfigured proxy fix would trust.
OTHER_HOSTS = ("evil.example", "evil.example:8443", "10.0.0.1:1", "[::1]:80", "localhost")


def host_variants(host: str) -> list[dict]:
    """Test-client arguments that make a request claim to be for ``host``."""
    return [
        {"base_url": f"http://{host}"},
        {"base_url": f"https://{host}"},
        {"headers": {"X-Forwarded-Host": host, "X-Forwarded-Proto": "https"}},
        {"headers": {"Forwarded": f"host={host};proto=https"}},
    ]


@pytest.fixture
def public_app(config):
    """The app with ``FIRSTTAG_PUBLIC_URL`` set, as an operator behind a proxy runs it."""
    return create_app(replace(config, public_url=PUBLIC))


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [(PUBLIC, PUBLIC), (None, "http://127.0.0.1:8000")],  # None: nothing configured
)
def test_any_host_header_gets_the_same_tag_with_the_configured_url(
    config, site, public_url, expected
):
    app = create_app(replace(config, public_url=public_url) if public_url else config)
    client = app.test_client()
    first = client.get(f"/t/{site.id}.js")
    body, etag = first.get_data(), first.headers["ETag"]
    assert f'"{expected}/api/v1"'.encode() in body
    for host in OTHER_HOSTS:
        for variant in host_variants(host):
            response = client.get(f"/t/{site.id}.js", **variant)
            assert response.status_code == 200
            assert response.get_data() == body, (host, variant)
            assert response.headers["ETag"] == etag
            assert host.encode() not in body
            # A browser's cached copy stays valid whatever Host it came through.
            conditional = {
                **variant,
                "headers": {**variant.get("headers", {}), "If-None-Match": etag},
            }
            assert client.get(f"/t/{site.id}.js", **conditional).status_code == 304


def test_random_hosts_render_nothing_new_and_do_not_grow_the_cache(public_app, site):
    client = public_app.test_client()
    tags = public_app.extensions["firsttag"].tags
    for i in range(200):  # each of these was a ~40 ms minification before
        response = client.get(f"/t/{site.id}.js", base_url=f"http://h{i}.evil.example")
        assert response.status_code == 200
    assert tags.renders == 1
    assert len(tags) == 1


def test_a_settings_change_replaces_the_cached_tag_and_its_etag(client, engine, site):
    from firsttag.sites import update_settings

    tags = client.application.extensions["firsttag"].tags
    first = client.get(f"/t/{site.id}.js")
    assert first.get_data(as_text=True).endswith('"firsttag",false);')

    update_settings(engine, site.id, consent_required=True)
    client.application.extensions["firsttag"].sites._cache.clear()  # skip the 10 s cache
    changed = client.get(f"/t/{site.id}.js", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200  # the old ETag no longer matches
    assert changed.get_data(as_text=True).endswith('"firsttag",true);')
    assert (tags.renders, len(tags)) == (2, 1)  # replaced, not added

    # A setting the tag does not contain keeps the cached bytes and the browser's copy.
    update_settings(engine, site.id, attribution_window_days=30)
    client.application.extensions["firsttag"].sites._cache.clear()
    same = client.get(f"/t/{site.id}.js", headers={"If-None-Match": changed.headers["ETag"]})
    assert same.status_code == 304
    assert tags.renders == 2


def test_the_cache_keeps_at_most_its_number_of_sites(engine):
    from firsttag.sites import create_site
    from firsttag.tag.render import TagCache, render_tag

    cache = TagCache(PUBLIC, max_sites=2)
    a, b, c = (create_site(engine, n, ["https://shop.example"])[0] for n in "abc")
    assert cache.get(a).body == render_tag(a, PUBLIC)
    cache.get(b)
    cache.get(a)  # a is now the most recently served
    cache.get(c)  # evicts b
    assert (len(cache), cache.renders) == (2, 3)
    cache.get(a)
    cache.get(c)
    assert cache.renders == 3  # both still cached
    cache.get(b)
    assert (len(cache), cache.renders) == (2, 4)


def test_tag_stays_within_its_gzip_budget_with_a_long_host(tmp_path, config):
    import gzip

    from firsttag.sites import Settings, Site
    from firsttag.tag.render import TAG_BUDGET_GZIP, render_tag

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
    from firsttag.sites import update_settings

    update_settings(engine, site.id, global_name="shopMetrics", tag_path="/assets/app-3f9a.js")
    client.application.extensions["firsttag"].sites._cache.clear()  # skip the 10 s cache
    custom = client.get("/assets/app-3f9a.js")
    assert custom.status_code == 200
    assert custom.content_type.startswith("application/javascript")
    assert custom.get_data(as_text=True).endswith('"shopMetrics",false);')
    assert client.get("/assets/other.js").status_code == 404


def test_bad_site_settings_are_refused(engine, site):
    import pytest
    from firsttag.sites import update_settings

    for bad in (
        {"global_name": "window"},
        {"global_name": "a-b"},
        {"tag_path": "/api/v1/x.js"},
        {"tag_path": "no-slash.js"},
    ):
        with pytest.raises(ValueError):
            update_settings(engine, site.id, **bad)


def test_the_minifier_runs_once_per_tag_version_not_per_site_or_url(engine):
    from firsttag.sites import create_site
    from firsttag.tag.render import _minified_tag, render_tag

    _minified_tag()
    before = _minified_tag.cache_info().misses
    for name in ("a", "b"):
        site = create_site(engine, name, ["https://shop.example"])[0]
        for url in ("https://a.example", "https://b.example/ft"):
            assert f'"{url}/api/v1"'.encode() in render_tag(site, url)
    assert _minified_tag.cache_info().misses == before


def test_the_committed_minified_tag_is_built_from_the_current_source():
    from firsttag.tag.render import MINIFIED_NAME, SOURCE_NAME, read_minified, templates_dir
    from firsttag_build.tagmin import provenance

    source = (templates_dir() / SOURCE_NAME).read_text()
    header, body = read_minified()
    # The header records the SHA-256 of both files: editing tag.js without regenerating,
    # or editing tag.min.js by hand, changes one of them.
    assert header == provenance(source, body), (
        f"{MINIFIED_NAME} is stale: run `python -m firsttag_build.tagmin` (needs Node.js)"
    )


# What the issue calls golfing, one pattern each. A line of the tag source is stripped of
# comments, strings and regex literals first, so a ";" inside them does not count.
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_REGEX = re.compile(r"(?<=[(=,:!&|?{};])\s*/(?![/*])(?:[^/\\\n\[]|\\.|\[(?:[^\]\\\n]|\\.)*\])+/")
_FOR_HEADER = re.compile(r"\bfor\s*\([^)]*\)")
_ASSIGNMENT = re.compile(r"(?<![=!<>])=(?!=)")


def _code(line: str) -> str:
    line = _REGEX.sub(" /re/", _STRING.sub('""', line))
    return line.split("//")[0].strip()


def _condition(code: str, keyword: str) -> str | None:
    """The parenthesised condition after ``keyword`` on this line, or None."""
    start = re.search(rf"\b{keyword}\s*\(", code)
    if start is None:
        return None
    depth = 0
    for i in range(start.end() - 1, len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        if depth == 0:
            return code[start.end() : i]
    return code[start.end() :]


def _top_level_comma(code: str) -> bool:
    depth = 0
    for char in code:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            return True
    return False


def golfed_lines(source: str) -> list[tuple[int, str, str]]:
    """Lines of JavaScript ``source`` holding more than one statement, as (number, why, line)."""
    found = []
    in_comment = False
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if in_comment or stripped.startswith("/*"):
            in_comment = "*/" not in stripped
            continue
        code = _code(line)
        rest = _FOR_HEADER.sub("for ()", code)
        checks = {
            "two statements": re.search(r";\s*[^\s})]", rest),
            "comma-chained declaration": code.startswith("var ") and _top_level_comma(code),
            "assignment in a condition": any(
                _ASSIGNMENT.search(_condition(code, keyword) or "") for keyword in ("if", "while")
            )
            or _ASSIGNMENT.search(((_condition(code, "for") or "").split(";") + ["", ""])[1]),
            "ternary or && as a statement": re.match(r"[\w.$\[\]()!]+\s*(\?|&&|\|\|)", code)
            and not _ASSIGNMENT.search(code),
        }
        found += [(number, why, stripped) for why, hit in checks.items() if hit]
    return found


@pytest.mark.parametrize(
    "golfed",
    [
        "var a = 1, b = 2;",
        "var mem = {},",
        "try { local = w.localStorage; tab = w.sessionStorage; } catch (e) {}",
        "if (granted = !!yes) {",
        "granted ? s.setItem(k, v) : later.push([s, k, v]);",
        "click && setClick(click[1]);",
        "for (var x; x = later.shift();) put(x[0], x[1], x[2]);",
    ],
)
def test_the_one_statement_check_catches_golfed_lines(golfed):
    assert golfed_lines(golfed), golfed


def test_the_tag_source_has_one_statement_a_line():
    from firsttag.tag.render import SOURCE_NAME, templates_dir

    source = (templates_dir() / SOURCE_NAME).read_text()
    assert golfed_lines(source) == []
