"""Conversions: every reported outcome as one :class:`Outcome`, and how re-sends are judged.

Each request shape (order webhook, Dub lead and sale, seed-003 event, seed-002 server
conversion, browser beacon) is turned into an ``Outcome`` with:

* an idempotency key (``dedup_key``) — what makes it the same conversion again;
* a fingerprint (``fields``) — what a re-send must repeat, else it is a 409 conflict;
* for orders, a ``state`` (status, refunded) and a sortable ``version`` — an update with an
  older version never replaces a newer one;
* the ``row`` the worker stores, and an optional customer to create first.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from firsttag import money, schemas
from firsttag.bounds import json_default
from firsttag.schemas import lead_key

#: A status later in this list wins a tie between two updates with the same time.
_STATUS_RANK = {
    s: i for i, s in enumerate(schemas.OrderWebhook.model_fields["status"].annotation.__args__)
}  # type: ignore[union-attr]

_ADJECTIVES = ("Big", "Calm", "Swift", "Bright", "Quiet", "Bold", "Lucky", "Gentle")
_COLOURS = ("Red", "Blue", "Green", "Amber", "Silver", "Violet", "Teal", "Coral")
_ANIMALS = ("Caribou", "Otter", "Falcon", "Lynx", "Heron", "Badger", "Marten", "Ibex")


@dataclass
class Outcome:
    """One conversion (or deferred customer) as the pipeline carries it."""

    dedup_key: str
    fields: dict[str, Any]
    row: dict[str, Any]
    state: dict[str, Any] | None = None
    version: str | None = None
    customer: dict[str, Any] | None = None
    #: False for a deferred lead: only the customer is stored, the lead comes later.
    record: bool = True
    #: A lead sent with ``clickId: ""`` takes the click of this existing customer.
    click_from_customer: str | None = None
    #: Wait for the worker to store it before answering (Dub's ``mode: wait``).
    wait: bool = False
    #: The version comes from the sender's ``updatedAt``, not from the time received.
    explicit_version: bool = False


Verdict = Literal["new", "update", "duplicate", "stale", "conflict"]


@dataclass
class Decision:
    """What to do with an outcome given what was received before under its key."""

    verdict: Verdict
    first_received_at: str | None = None
    differing: list[str] = field(default_factory=list)


def judge(outcome: Outcome, prior: dict[str, Any] | None) -> Decision:
    """Compare an outcome with the earlier record of its key (from Redis or the store)."""
    if prior is None:
        return Decision("new")
    first = prior.get("firstReceivedAt")
    before = prior.get("fields") or {}
    differing = sorted(
        k for k in outcome.fields.keys() | before.keys() if outcome.fields.get(k) != before.get(k)
    )
    if differing:
        return Decision("conflict", first, differing)
    newer = (outcome.version or "") > (prior.get("version") or "")
    if outcome.state is None or outcome.state == prior.get("state"):
        # Same state again. With the sender's own updatedAt a newer one still advances the
        # order's clock, so an older update replayed later cannot win over it; without
        # one, this is a retry.
        if outcome.state is not None and outcome.explicit_version and newer:
            return Decision("update", first)
        return Decision("duplicate", first)
    if not newer:
        return Decision("stale", first)
    return Decision("update", first)


def claim_for(outcome: Outcome, decision: Decision, received_at: str) -> dict[str, Any]:
    """What Redis remembers of this key until the worker has stored it."""
    return {
        "fields": outcome.fields,
        "state": outcome.state,
        "version": outcome.version,
        "firstReceivedAt": decision.first_received_at or received_at,
    }


def _canonical(value: Any) -> Any:
    # The fingerprint is compared after a JSON round trip (Redis, the database).
    return json.loads(json.dumps(value, sort_keys=True, default=json_default))


def _row(**values: Any) -> dict[str, Any]:
    base = dict.fromkeys(
        (
            "visitorId",
            "sessionId",
            "clickId",
            "customerId",
            "orderId",
            "value",
            "currency",
            "status",
            "stateVersion",
            "details",
            "metadata",
            "url",
        ),
    )
    base["refunded"] = 0
    base.update(values)
    return base


def from_order(body: schemas.OrderWebhook, received_at: str) -> Outcome:
    """An order webhook (Selektable). Total 0 is a lead-gen conversion."""
    if body.refundedCents is not None:
        refunded = body.refundedCents
    elif body.status in ("refunded", "cancelled"):
        refunded = body.totalCents  # a full reversal when no partial amount is given
    else:
        refunded = 0
    state = {"status": body.status, "refunded": refunded}
    version = f"{body.updatedAt or received_at}|{_STATUS_RANK[body.status]:02d}|{refunded:016d}"
    items = [i.model_dump() for i in body.items]
    fields = _canonical(
        {
            "storeId": body.storeId,
            "organizationId": body.organizationId,
            "visitorId": body.visitorId,
            "sessionId": body.sessionId,
            "totalCents": body.totalCents,
            "currency": body.currency,
            "items": items,
        }
    )
    row = _row(
        dedupKey=f"order:{body.orderId}",
        kind="sale" if body.totalCents else "lead",
        source="order",
        name="Order" if body.totalCents else "Lead",
        visitorId=body.visitorId,
        sessionId=body.sessionId,
        orderId=body.orderId,
        value=body.totalCents,
        refunded=refunded,
        currency=body.currency,
        status=body.status,
        stateVersion=version,
        occurredAt=body.orderCreatedAt,
        details={
            "storeId": body.storeId,
            "organizationId": body.organizationId,
            "platform": body.platform,
            "items": items,
        },
    )
    return Outcome(
        f"order:{body.orderId}",
        fields,
        row,
        state,
        version,
        explicit_version=body.updatedAt is not None,
    )


def generated_name() -> str:
    """A readable name for a customer sent without one (as Dub does: "Big Red Caribou")."""
    return " ".join(secrets.choice(words) for words in (_ADJECTIVES, _COLOURS, _ANIMALS))


def _customer(
    external_id: str, name: str | None, email: str | None, avatar: str | None, click_id: str | None
) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "name": name or generated_name(),
        "email": email,
        "avatar": avatar,
        "clickId": click_id or None,
    }


def from_lead(body: schemas.TrackLead, received_at: str) -> Outcome:
    """A Dub lead; ``deferred`` stores the customer and its click, the lead comes later."""
    return _lead(
        body.customerExternalId,
        body.eventName,
        body.clickId,
        body.mode,
        received_at,
        customer=_customer(
            body.customerExternalId,
            body.customerName,
            body.customerEmail,
            body.customerAvatar,
            body.clickId,
        ),
        metadata=body.metadata,
        source="track",
    )


def _lead(
    customer_id: str,
    event_name: str,
    click_id: str | None,
    mode: str,
    occurred_at: str,
    customer: dict[str, Any],
    metadata: Any,
    source: str,
) -> Outcome:
    if mode == "deferred":
        key = f"customer:{customer_id}"
        return Outcome(
            key, _canonical({"clickId": click_id or None}), {}, customer=customer, record=False
        )
    key = lead_key(customer_id, event_name)
    fields = _canonical({"clickId": click_id or None})
    row = _row(
        dedupKey=key,
        kind="lead",
        source=source,
        name=event_name,
        clickId=click_id or None,
        customerId=customer_id,
        occurredAt=occurred_at,
        metadata=metadata,
        details={"eventName": event_name},
    )
    return Outcome(
        key,
        fields,
        row,
        customer=customer,
        click_from_customer=customer_id if not click_id else None,
        wait=mode == "wait",
    )


def _sale_key(invoice_id: str | None) -> str:
    # Without an invoice ID nothing identifies a re-send; each such sale stands alone.
    return f"sale:{invoice_id}" if invoice_id else f"sale-once:{secrets.token_hex(12)}"


def from_sale(body: schemas.TrackSale, received_at: str) -> Outcome:
    """A Dub sale: ``amount`` in minor units, counted once per ``invoiceId``."""
    key = _sale_key(body.invoiceId)
    fields = _canonical(
        {
            "customerExternalId": body.customerExternalId,
            "amount": body.amount,
            "currency": body.currency,
            "eventName": body.eventName,
        }
    )
    row = _row(
        dedupKey=key,
        kind="sale",
        source="track",
        name=body.eventName,
        clickId=body.clickId or None,
        customerId=body.customerExternalId,
        value=body.amount,
        currency=body.currency,
        orderId=body.invoiceId,
        occurredAt=received_at,
        metadata=body.metadata,
        details={
            "invoiceId": body.invoiceId,
            "leadEventName": body.leadEventName,
            "paymentProcessor": body.paymentProcessor,
        },
    )
    return Outcome(
        key,
        fields,
        row,
        click_from_customer=None if body.clickId else body.customerExternalId,
        wait=body.mode == "wait",
    )


def from_link_event(body: schemas.LinkEvent, received_at: str) -> Outcome:
    """A seed-003 Lead or Sale: decimal ``amount`` converted exactly to minor units."""
    customer_id = body.customer_id() or ""
    occurred = body.timestamp or received_at
    customer = _customer(customer_id, body.name, body.email, None, body.clickId)
    if body.event == "lead":
        outcome = _lead(
            customer_id,
            "lead",
            body.clickId,
            body.mode,
            occurred,
            customer,
            body.metadata,
            source="event",
        )
        if outcome.record and not body.clickId:
            outcome.click_from_customer = customer_id
        return outcome
    assert body.amount is not None and body.currency is not None  # checked by the schema
    value = money.to_minor_units(body.amount, body.currency)
    key = _sale_key(body.invoiceId)
    fields = _canonical(
        {"customerExternalId": customer_id, "amount": value, "currency": body.currency}
    )
    row = _row(
        dedupKey=key,
        kind="sale",
        source="event",
        name="sale",
        clickId=body.clickId or None,
        customerId=customer_id,
        value=value,
        currency=body.currency,
        orderId=body.invoiceId,
        occurredAt=occurred,
        metadata=body.metadata,
        details={"invoiceId": body.invoiceId},
    )
    return Outcome(
        key,
        fields,
        row,
        customer=customer,
        click_from_customer=None if body.clickId else customer_id,
        wait=body.mode == "wait",
    )


def from_server_conversion(body: schemas.ServerConversion, received_at: str) -> Outcome:
    """A seed-002 server-side conversion, linked to the browser by ``visitor_id``."""
    key = (
        f"conversion:{body.order_id}"
        if body.order_id
        else f"conversion-once:{secrets.token_hex(12)}"
    )
    fields = _canonical(
        {
            "name": body.name,
            "visitorId": body.visitor_id,
            "value": body.value,
            "currency": body.currency,
        }
    )
    row = _row(
        dedupKey=key,
        kind="sale" if body.value else "conversion",
        source="server",
        name=body.name,
        visitorId=body.visitor_id,
        sessionId=body.session_id,
        orderId=body.order_id,
        value=body.value,
        currency=body.currency,
        occurredAt=body.timestamp or received_at,
        metadata=body.metadata,
    )
    return Outcome(key, fields, row)


def from_beacon(
    body: schemas.BrowserConversion, session_id: str | None, received_at: str
) -> Outcome:
    """A browser conversion from ``firsttag.convert()``, keyed by the tag's ID.

    With a value it is a ``sale`` like the others (a Dub or Segment user looks for sales
    there), but its ``source`` is ``browser``: the value is reported with the public key,
    not confirmed, so analytics keep it out of revenue unless the site opts in.
    """
    key = f"browser:{body.id}"
    row = _row(
        dedupKey=key,
        kind="sale" if body.value else "conversion",
        source="browser",
        name=body.name,
        visitorId=body.visitorId,
        sessionId=session_id,
        clickId=body.clickId or None,
        orderId=body.orderId,
        value=body.value,
        currency=body.currency,
        metadata=body.metadata,
        url=body.url,
        occurredAt=received_at,
    )
    return Outcome(key, {}, row)
