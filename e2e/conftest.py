"""End-to-end fixtures: `firsttag serve` as a user runs it, a demo shop, real Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, redirect, request
from playwright.sync_api import Browser, sync_playwright
from werkzeug.serving import make_server

from tests.support import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # www.shop.test and shop.test reach the demo shop: cookie-domain tests need real names.
    "--host-resolver-rules=MAP shop.test 127.0.0.1, MAP *.shop.test 127.0.0.1",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Firsttag:
    """A running `firsttag serve` and the site created for the shop."""

    url: str
    data_dir: Path
    site: dict[str, Any]

    def api(self, path: str) -> requests.Response:
        """GET an API path with the site's secret key, as a back end would."""
        return requests.get(
            self.url + path,
            headers={"Authorization": f"Bearer {self.site['secretKey']}"},
            timeout=10,
        )


@dataclass
class Shop:
    """The demo shop: its URL and what its back end received."""

    url: str
    orders: list[dict[str, str]] = field(default_factory=list)
    #: Pages a test composes, served at /p/<name>.
    pages: dict[str, str] = field(default_factory=dict)
    webhook_answers: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="session")
def shop_port() -> int:
    return free_port()


class Serve:
    """`firsttag serve` as a user runs it: its own Redis and SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.url = ""
        self.args = args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start and wait for /healthz; returns the base URL."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with (self.data_dir / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "firsttag.ops.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 60, "firsttag serve to answer /healthz")
        return self.url

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            assert self.process and self.process.poll() is None, (
                self.data_dir / "serve.log"
            ).read_text()
            return False

    def create_site(self, origin: str, *options: str) -> dict[str, Any]:
        """`firsttag sites create`, as printed."""
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "firsttag.ops.cli",
                "sites",
                "create",
                "--name",
                "Demo shop",
                "--origin",
                origin,
                "--base-url",
                self.url,
                "--data-dir",
                str(self.data_dir),
                *options,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(created.stdout)

    def stop(self) -> None:
        """Ctrl-C; it must exit 0 and leave neither the web server nor Redis running."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(self.url + "/healthz", timeout=2)
        assert not (self.data_dir / "redis" / "redis.sock").exists()


@pytest.fixture(scope="session")
def firsttag(tmp_path_factory: pytest.TempPathFactory, shop_port: int) -> Iterator[Firsttag]:
    """`firsttag serve` on embedded defaults (its own Redis, SQLite), stopped with Ctrl-C."""
    serve = Serve(tmp_path_factory.mktemp("firsttag-data"))
    url = serve.start()
    yield Firsttag(url, serve.data_dir, serve.create_site(f"http://127.0.0.1:{shop_port}"))
    serve.stop()


@pytest.fixture(scope="session")
def shop(firsttag: Firsttag, shop_port: int) -> Iterator[Shop]:
    """A shop on its own origin whose pages carry the pasted tag."""
    shop = Shop(f"http://127.0.0.1:{shop_port}")
    app = build_shop(firsttag, shop)
    server = make_server("127.0.0.1", shop_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield shop
    server.shutdown()


def build_shop(firsttag: Firsttag, shop: Shop) -> Flask:
    site = firsttag.site
    tag = site["tag"]  # pasted exactly as `firsttag sites create` printed it
    sync_tag = tag.replace(" async", "")
    # The ClickLens seed's frontend snippet, verbatim but for host and key.
    clicklens = """
const sessionKey = sessionStorage.getItem('cl_sk');
if (sessionKey) {
fetch('https://your-domain.clicklens.io/api/v1/sessions/convert', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_SITE_KEY'
},
body: JSON.stringify({ sessionKey })
});
}
"""
    clicklens = clicklens.replace("https://your-domain.clicklens.io", firsttag.url)
    clicklens = clicklens.replace("YOUR_SITE_KEY", site["siteKey"])

    app = Flask("demo_shop")

    def page(title: str, body: str, head: str = tag) -> str:
        return (
            f"<!doctype html><html><head><title>{title}</title>{head}</head>"
            f"<body>{body}</body></html>"
        )

    @app.get("/")
    def product() -> str:
        return page("Product", '<h1>Blue mug</h1><a id="buy" href="/checkout">Buy</a>')

    @app.get("/checkout")
    def checkout() -> str:
        return page(
            "Checkout",
            """
<form id="checkout" action="/checkout/complete" method="POST">
  <input name="email" value="buyer@example.com">
  <input type="hidden" name="visitorId"><input type="hidden" name="sessionId">
  <input type="hidden" name="sessionKey"><input type="hidden" name="clickId">
  <button id="pay" type="submit">Pay</button>
</form>
<button id="later" type="button" onclick="
  var f = document.createElement('form');
  f.id = 'late';
  f.innerHTML = '<input type=hidden data-firsttag=visitorId name=vid>';
  document.body.appendChild(f);">Add a form</button>""",
        )

    @app.post("/checkout/complete")
    def complete() -> Any:
        form = dict(request.form)
        shop.orders.append(form)
        # The Selektable seed's server-side webhook, translated from Node to Python.
        order = {
            "id": f"ord_{len(shop.orders)}",
            "totalCents": 4900,
            "currency": "EUR",
            "items": [{"productId": "mug", "quantity": 2, "priceCents": 2450}],
        }
        response = requests.post(
            firsttag.url + "/api/webhooks/orders",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {site['secretKey']}",
            },
            data=json.dumps(
                {
                    "orderId": order["id"],
                    "storeId": "store_xxx",
                    "organizationId": "org_xxx",
                    "visitorId": form["visitorId"],
                    "sessionId": form["sessionId"],
                    "totalCents": order["totalCents"],
                    "currency": order["currency"],
                    "platform": "custom",
                    "status": "completed",
                    "orderCreatedAt": datetime.now(UTC).isoformat(),
                    "items": [
                        {
                            "productId": item["productId"],
                            "quantity": item["quantity"],
                            "priceCents": item["priceCents"],
                            "totalCents": item["priceCents"] * item["quantity"],
                        }
                        for item in order["items"]
                    ],
                }
            ),
            timeout=10,
        )
        shop.webhook_answers.append(response.json())
        return redirect("/thank-you")

    @app.get("/thank-you")
    def thank_you() -> str:
        purchase = "firsttag.convert('Purchase', "
        purchase += "{orderId: 'ord_1', value: 4900, currency: 'EUR', coupon: 'WELCOME'});"
        script = clicklens + purchase
        return page("Thank you", f"<p>Thanks!</p><script>{script}</script>", head=sync_tag)

    @app.get("/gtm-thank-you")
    def gtm_thank_you() -> str:
        # The seed's GTM Custom HTML tag, verbatim but for host and key.
        custom_html = GTM_CUSTOM_HTML.replace(
            "https://your-domain.clicklens.io", firsttag.url
        ).replace("YOUR_SITE_KEY", site["siteKey"])
        return page("GTM thank you", custom_html, head="")

    @app.get("/convert-and-leave")
    def convert_and_leave() -> str:
        # The worst case for delivery: the page is gone right after convert() returns.
        script = """
firsttag.convert('Signup', {orderId: new URLSearchParams(location.search).get('order')});
location.href = '/done';"""
        return page("Leaving", f"<script>{script}</script>", head=sync_tag)

    @app.get("/done")
    def done() -> str:
        return page("Done", "<p>Done</p>", head="")

    @app.get("/p/<name>")
    def composed(name: str) -> str:
        return shop.pages[name]

    @app.get("/twice")
    def twice() -> str:
        return page("Twice", "<p>tag twice</p>", head=tag + tag)

    return app


GTM_CUSTOM_HTML = """<script>
var sessionKey = sessionStorage.getItem('cl_sk');
if (sessionKey) {
var xhr = new XMLHttpRequest();
xhr.open('POST', 'https://your-domain.clicklens.io/api/v1/sessions/convert');
xhr.setRequestHeader('Content-Type', 'application/json');
xhr.setRequestHeader('Authorization', 'Bearer YOUR_SITE_KEY');
xhr.send(JSON.stringify({ sessionKey: sessionKey }));
}
</script>"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium when installed, else Playwright's own (`playwright install chromium`)."""
    with sync_playwright() as p:
        options: dict[str, Any] = {"args": CHROMIUM_ARGS}
        if Path(CHROMIUM).exists():
            options["executable_path"] = CHROMIUM
        b = p.chromium.launch(**options)
        yield b
        b.close()
