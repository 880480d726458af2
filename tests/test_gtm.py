"""The GTM files, checked offline the way GTM checks them on import."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from fnmatch import fnmatchcase

import pytest
import yaml
from firsttag.web.app import create_app

SECTIONS = [
    "TERMS_OF_SERVICE",
    "INFO",
    "TEMPLATE_PARAMETERS",
    "SANDBOXED_JS_FOR_WEB_TEMPLATE",
    "WEB_PERMISSIONS",
    "TESTS",
    "NOTES",
]
JSON_SECTIONS = {"INFO", "TEMPLATE_PARAMETERS", "WEB_PERMISSIONS"}
# Sandboxed APIs → the permission each needs (GTM's documented pairs, for the APIs we use
# or might: anything else required must add its entry here).
PERMISSION_OF = {
    "injectScript": "inject_script",
    "logToConsole": "logging",
    "copyFromWindow": "access_globals",
    "setInWindow": "access_globals",
    "callInWindow": "access_globals",
    "sendPixel": "send_pixel",
}


def strict_json(text: str):
    def reject(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=reject)


def sections(tpl: str) -> dict[str, str]:
    parts = re.split(r"^___([A-Z_]+)___$", tpl, flags=re.MULTILINE)
    assert parts[0] == ""
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_template_imports_as_gtm_reads_it(client, site):
    tag_url = f"http://127.0.0.1:8000/t/{site.id}.js"  # the default public URL
    response = client.get(f"/gtm/{site.id}/template.tpl")
    assert response.status_code == 200
    parsed = sections(response.get_data(as_text=True))
    assert list(parsed) == SECTIONS
    for name in JSON_SECTIONS:
        strict_json(parsed[name])
    info = strict_json(parsed["INFO"])
    assert info["type"] == "TAG" and info["containerContexts"] == ["WEB"]
    tests = yaml.safe_load(parsed["TESTS"])
    assert tests["scenarios"] and all({"name", "code"} <= set(s) for s in tests["scenarios"])

    code = parsed["SANDBOXED_JS_FOR_WEB_TEMPLATE"]
    required = set(re.findall(r"require\('(\w+)'\)", code))
    assert required == {"injectScript"}
    permissions = strict_json(parsed["WEB_PERMISSIONS"])
    granted = {p["instance"]["key"]["publicId"]: p for p in permissions}
    assert set(granted) == {PERMISSION_OF[api] for api in required}  # no more, no fewer
    assert "access_globals" not in granted  # the code touches no window globals
    assert not re.search(r"\bwindow\b|\bdocument\b", code)
    patterns = [
        item["string"]
        for p in granted["inject_script"]["instance"]["param"]
        if p["key"] == "urls"
        for item in p["value"]["listItem"]
    ]
    injected = re.findall(r"const tagUrl = \"([^\"]+)\"", code)
    assert injected == [tag_url]
    assert all(any(fnmatchcase(url, p) for p in patterns) for url in injected)


def test_custom_html_and_container(client, site):
    html = client.get(f"/gtm/{site.id}/custom-html").get_data(as_text=True)
    assert "{{" not in html
    for not_es5 in ("=>", "let ", "const ", "`"):
        assert not_es5 not in html
    assert f"/t/{site.id}.js" in html
    container = strict_json(client.get(f"/gtm/{site.id}/container.json").get_data(as_text=True))
    assert container["exportFormatVersion"] == 2
    (tag,) = container["containerVersion"]["tag"]
    assert tag["type"] == "html" and tag["firingTriggerId"] == ["2147479553"]  # All Pages
    assert {p["key"]: p["value"] for p in tag["parameter"]}["html"] == html
    assert client.get("/gtm/st_000000000000/template.tpl").status_code == 404


@pytest.mark.parametrize(
    "public",
    ["https://tags.shop.example", None],  # None: the default, http://127.0.0.1:8000
)
def test_every_gtm_file_uses_the_configured_url_whatever_the_host(config, site, public):
    app = create_app(replace(config, public_url=public) if public else config)
    public = public or "http://127.0.0.1:8000"
    client = app.test_client()
    for name in ("custom-html", "template.tpl", "container.json"):
        path = f"/gtm/{site.id}/{name}"
        expected = client.get(path).get_data()
        assert f"{public}/t/{site.id}.js".encode() in expected, name
        for claimed in (
            {"base_url": "http://evil.example"},
            {"base_url": "https://evil.example:8443"},
            {"headers": {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}},
        ):
            response = client.get(path, **claimed)
            assert response.get_data() == expected, (name, claimed)
            assert b"evil" not in response.get_data()
