"""Dub's own Python SDK (PyPI ``dub``, pinned) against firsttag: switching is a host and a key.

Each test builds the client exactly as a Dub user does, ``Dub(token=…)``, with only
``server_url`` pointed at firsttag, and calls ``track.lead`` / ``track.sale`` over real
HTTP into a real Redis and a real RQ worker. The SDK validates every answer against its
generated models (``ResponseValidationError`` on a missing key) and maps each error status
and code to a typed exception, so these tests pin Dub's answer shapes and error envelope.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from dub import Dub
from dub.models import errors
from firsttag import store
from firsttag.customer_ids import customer_id
from firsttag.web.app import create_app
from firsttag.web.errors import APIError
from flask import Blueprint

from tests.support import wait_until


@pytest.fixture
def dub_sdk(live_url, site_and_secret) -> Dub:
    """Dub's client as a Dub user writes it, with firsttag's URL and the site's secret key."""
    return Dub(token=site_and_secret[1], server_url=f"{live_url}/api/v1")


def stored(live_url: str, secret: str, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """Poll the conversions API until ``count`` conversions of ``kind`` are stored."""

    def found() -> list[dict[str, Any]] | None:
        answer = requests.get(
            f"{live_url}/api/v1/conversions?limit=500",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        rows = [c for c in answer.json()["data"] if c["kind"] == kind]
        return rows if len(rows) >= count else None

    return wait_until(found, 20, f"{count} stored {kind}(s)")


def test_a_lead_is_answered_as_dub_and_stored_once_with_its_click(
    dub_sdk, live_url, site_and_secret, worker
):
    lead = {
        "click_id": "clk_sdk_1",
        "event_name": "Sign Up",
        "customer_external_id": "user_1",
        "customer_name": "Ann Example",
        "customer_email": "ann@example.com",
    }
    first = dub_sdk.track.lead(request=lead)
    assert first.click.id == "clk_sdk_1"
    assert first.link is None  # firsttag has no short links
    assert (first.customer.name, first.customer.email, first.customer.external_id) == (
        "Ann Example",
        "ann@example.com",
        "user_1",
    )
    [row] = stored(live_url, site_and_secret[1], "lead")
    assert (row["clickId"], row["customerExternalId"], row["name"]) == (
        "clk_sdk_1",
        "user_1",
        "Sign Up",
    )

    # A retry (Dub's SDK retries, and so do integrations) answers the same and counts once.
    again = dub_sdk.track.lead(request=lead)
    assert again.click.id == "clk_sdk_1"
    assert again.customer.external_id == "user_1"
    assert len(stored(live_url, site_and_secret[1], "lead")) == 1


def test_a_wait_lead_through_a_bare_host_answers_once_it_is_stored(
    live_url, site_and_secret, worker
):
    # serverURL without /api/v1: the routes are served at the root too.
    bare = Dub(token=site_and_secret[1], server_url=live_url)
    answer = bare.track.lead(
        request={
            "click_id": "clk_wait",
            "event_name": "Demo",
            "customer_external_id": "user_w",
            "mode": "wait",
        }
    )
    assert answer.click.id == "clk_wait"
    assert len(answer.customer.name.split()) == 3  # generated, as Dub does ("Big Red Caribou")
    [row] = stored(live_url, site_and_secret[1], "lead")
    assert row["clickId"] == "clk_wait"


def test_a_deferred_lead_is_completed_later_with_the_customers_click(
    dub_sdk, live_url, site_and_secret, engine, worker
):
    deferred = dub_sdk.track.lead(
        request={
            "click_id": "clk_deferred",
            "event_name": "Sign Up",
            "customer_external_id": "user_d",
            "customer_name": "Dee",
            "mode": "deferred",
        }
    )
    assert deferred.click.id == "clk_deferred"
    assert deferred.customer.name == "Dee"
    # The deferred call stores the customer, not a lead.
    wait_until(lambda: store.customer_exists(engine, site_and_secret[0].id, "user_d"), 20)
    later = dub_sdk.track.lead(
        request={"click_id": "", "event_name": "Sign Up", "customer_external_id": "user_d"}
    )
    assert later.click.id == "clk_deferred"  # the customer's click, as Dub answers
    assert later.customer.name == "Dee"  # the stored customer, not a new generated name
    [row] = stored(live_url, site_and_secret[1], "lead")
    assert (row["clickId"], row["customerExternalId"]) == ("clk_deferred", "user_d")


def test_a_sale_is_answered_as_dub_and_counted_once_per_invoice(
    dub_sdk, live_url, site_and_secret, worker
):
    site, secret = site_and_secret
    dub_sdk.track.lead(
        request={"click_id": "clk_s", "event_name": "Sign Up", "customer_external_id": "user_s"}
    )
    sale = {
        "customer_external_id": "user_s",
        "amount": 4900,
        "currency": "eur",
        "invoice_id": "in_1",
        "payment_processor": "stripe",
        "metadata": {"plan": "pro"},
    }
    first = dub_sdk.track.sale(request=sale)
    assert first.event_name == "Purchase"  # Dub's default event name
    assert first.customer is not None and first.sale is not None
    assert first.customer.id == customer_id(site.id, "user_s")
    assert first.customer.external_id == "user_s"
    assert (first.sale.amount, first.sale.currency, first.sale.payment_processor) == (
        4900,
        "eur",
        "stripe",
    )
    assert (first.sale.invoice_id, first.sale.metadata) == ("in_1", {"plan": "pro"})

    again = dub_sdk.track.sale(request=sale)
    assert again.sale is not None and again.sale.invoice_id == "in_1"
    assert again.customer is not None and again.customer.id == first.customer.id
    [row] = stored(live_url, secret, "sale")
    assert (row["value"], row["currency"], row["clickId"]) == (4900, "EUR", "clk_s")

    # The same invoice with another amount is not a retry: Dub's typed Conflict.
    with pytest.raises(errors.Conflict) as conflict:
        dub_sdk.track.sale(request={**sale, "amount": 5000})
    assert conflict.value.data.error.code == "conflict"


def test_errors_are_dubs_typed_errors(dub_sdk, live_url, worker):
    lead = {"click_id": "clk_e", "event_name": "Sign Up", "customer_external_id": "user_e"}

    with pytest.raises(errors.Unauthorized) as unauthorized:
        Dub(token="sk_not_a_key", server_url=f"{live_url}/api/v1").track.lead(request=lead)
    assert unauthorized.value.data.error.code == "unauthorized"

    # A bad body: Dub's BadRequest, still naming the field.
    with pytest.raises(errors.BadRequest) as bad:
        dub_sdk.track.sale(request={"customer_external_id": "user_e", "amount": -1})
    assert bad.value.data.error.code == "bad_request"
    assert "amount" in bad.value.data.error.message
    assert [f["field"] for f in bad.value.raw_response.json()["error"]["fields"]] == ["amount"]

    # A sale for a customer firsttag never saw, without a click: Dub's NotFound.
    with pytest.raises(errors.NotFound) as not_found:
        dub_sdk.track.sale(request={"customer_external_id": "ghost", "amount": 100})
    assert not_found.value.data.error.code == "not_found"
    assert not_found.value.raw_response.json()["error"]["reason"] == "customer_not_found"


def test_the_dub_envelope_covers_blueprints_named_dub_and_only_those(config):
    """The contract with the other Dub routes: a blueprint named ``dub…`` gets Dub's envelope."""
    app = create_app(config)
    for name in ("dub_probe", "probe"):
        bp = Blueprint(name, __name__)

        @bp.get(f"/{name}/<int:status>")
        def fail(status: int) -> None:
            raise APIError(status, "precise_reason", "told", [{"field": "x", "message": "bad"}])

        app.register_blueprint(bp)
    client = app.test_client()
    expected = {400: "bad_request", 404: "not_found", 409: "conflict", 429: "rate_limit_exceeded"}
    for status, code in expected.items():
        dub_error = client.get(f"/dub_probe/{status}").get_json()["error"]
        assert dub_error == {
            "code": code,
            "message": "told",
            "reason": "precise_reason",
            "fields": [{"field": "x", "message": "bad"}],
        }
        ours = client.get(f"/probe/{status}").get_json()["error"]
        assert ours["code"] == "precise_reason" and "reason" not in ours
    # An unknown URL is nobody's: our envelope.
    assert client.get("/dub_nothing").get_json()["error"]["code"] == "not_found"
    assert "reason" not in client.get("/dub_nothing").get_json()["error"]
