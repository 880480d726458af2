"""First-party mode in Chromium: the shop and firsttag behind ONE nginx origin.

nginx serves the shop at ``/`` and proxies ``/ft/`` to `firsttag serve`, as the README's
snippet does. The tag, its requests and the server's cookie are then all the shop's own.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from e2e.conftest import Serve, free_port
from tests.support import wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FOUR_HUNDRED_DAYS = 400 * 24 * 3600

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        # The README's first-party location: the trailing / strips the /ft prefix.
        location /ft/ {{
            proxy_pass {firsttag}/;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        location / {{
            proxy_pass {shop};
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def origin(firsttag, shop, tmp_path_factory) -> Iterator[str]:
    """One origin for the shop and firsttag: our own nginx on a free loopback port."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is needed for this test: apt-get install -y nginx")
    folder = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=port, firsttag=firsttag.url, shop=shop.url))
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")]
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (folder / "error.log").read_text()
        try:
            return requests.get(url + "/ft/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, 20, "nginx in front of the shop and firsttag")
    yield url
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="module")
def first_party_site(firsttag, origin) -> dict:
    """A site in first-party mode on the nginx origin, as `firsttag sites create` prints it."""
    admin = Serve(firsttag.data_dir)
    admin.url = firsttag.url
    return admin.create_site(origin, "--first-party-path", "/ft")


def test_a_wiped_visitor_comes_back_with_the_same_ids(
    browser, firsttag, shop, origin, first_party_site
):
    site = first_party_site
    assert f'src="/ft/t/{site["id"]}.js"' in site["tag"]  # the tag, too, from the shop's origin
    shop.pages["first-party"] = (
        f"<!doctype html><html><head>{site['tag']}</head><body>"
        '<form id="f"><input type="hidden" name="visitorId">'
        '<input type="hidden" name="clickId"></form></body></html>'
    )
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with page.expect_response("**/ft/api/v1/sessions") as registered:
        page.goto(origin + "/p/first-party?dub_id=clk_fp")
    header = registered.value.header_value("set-cookie") or ""
    assert f"Max-Age={FOUR_HUNDRED_DAYS}" in header
    assert "HttpOnly" in header and "SameSite=Lax" in header

    def identity() -> dict | None:
        return page.evaluate(
            "window.firsttag && firsttag.getIdentity && firsttag.getIdentity().sessionKey"
            " && firsttag.getIdentity()"
        )

    first = wait_until(identity, 15, "the first registration")
    assert first["clickId"] == "clk_fp"
    (cookie,) = [c for c in context.cookies() if c["name"] == f"ft_{site['id']}"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    # http on loopback: no Secure (browsers drop a Secure cookie sent over http; Safari even
    # on localhost); over https the cookie is __Host-ft_<site> with Secure (tests/test_firstparty).
    assert cookie["secure"] is False
    assert abs(cookie["expires"] - time.time() - FOUR_HUNDRED_DAYS) < 86400
    assert f"ft_{site['id']}" not in page.evaluate("document.cookie")  # HttpOnly: not for scripts

    # What Safari does to script-written state after 7 days: all of it gone.
    page.evaluate("localStorage.clear(); sessionStorage.clear()")
    context.clear_cookies(name="dub_id")
    assert "dub_id" not in page.evaluate("document.cookie")
    page.goto(origin + "/p/first-party")  # no ?dub_id= this time
    again = wait_until(identity, 15, "the registration after the wipe")
    assert again["sessionId"] != first["sessionId"]  # a new visit...
    assert again["visitorId"] == first["visitorId"]  # ...of the same visitor
    assert again["clickId"] == "clk_fp"
    assert page.evaluate("localStorage.getItem('ft_vid')") == first["visitorId"]
    assert page.evaluate("document.forms.f.visitorId.value") == first["visitorId"]
    assert page.evaluate("document.forms.f.clickId.value") == "clk_fp"
    assert "dub_id=clk_fp" in page.evaluate("document.cookie")  # for the shop's back end too
    session_url = f"{firsttag.url}/api/v1/sessions/{again['sessionKey']}"
    auth = {"Authorization": f"Bearer {site['secretKey']}"}
    stored = wait_until(
        lambda: (r := requests.get(session_url, headers=auth, timeout=10)).ok and r.json(),
        20,
        "the stored session",
    )
    assert (stored["visitorId"], stored["clickId"]) == (first["visitorId"], "clk_fp")
    assert errors == []
    context.close()
