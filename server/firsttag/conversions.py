"""Conversions: every reported outcome as one :class:`Outcome` (the *makers*).

Each request shape (order webhook, Dub lead and sale, seed-003 event, seed-002 server
conversion, browser beacon) is turned into an ``Outcome`` with:

* an idempotency key (``dedup_key``) — what makes it the same conversion again;
* a fingerprint (``fields``) — what a re-send must repeat, else it is a 409 conflict;
* for orders, a ``state`` (status, refunded) and a sortable ``version`` — an update with an
  older version never replaces a newer one;
* the :class:`~firsttag.wire.Conversion` the worker stores, and an optional
  customer to create first.

Whether an outcome is new, a duplicate, a newer version or a conflict is decided in
:mod:`firsttag.admission`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from firsttag import money, schemas
from firsttag.bounds import json_default
from firsttag.schemas import lead_key
from firsttag.wire import Conversion, Customer

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
    #: What the store keeps; None for a deferred lead (only the customer is stored, the
    #: lead comes later).
    conversion: Conversion | None
    state: dict[str, Any] | None = None
    version: str | None = None
    customer: Customer | None = None
    #: A lead sent with ``clickId: ""`` takes the click of this existing customer.
    click_from_customer: str | None = None
    #: Wait for the worker to store it before answering (Dub's ``mode: wait``).
    wait: bool = False
    #: The version comes from the sender's ``updatedAt``, not from the time received.
    explicit_version: bool = False

    @property
    def record(self) -> bool:
        """Whether a conversion is stored (False for a deferred lead)."""
        return self.conversion is not None


def _canonical(value: Any) -> Any:
    # The fingerprint is compared after a JSON round trip (Redis, the database).
    return json.loads(json.dumps(value, sort_keys=True, default=json_default))


def state_time(version: str) -> str:
    """When an order's state happened, read from its state version (see :func:`from_order`:
    the shop's ``updatedAt``, else the time firsttag received it)."""
    return version.split("|", 1)[0]


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
    row = Conversion(
        dedup_key=f"order:{body.orderId}",
        kind="sale" if body.totalCents else "lead",
        source="order",
        name="Order" if body.totalCents else "Lead",
        visitor_id=body.visitorId,
        session_id=body.sessionId,
        order_id=body.orderId,
        value=body.totalCents,
        refunded=refunded,
        currency=body.currency,
        status=body.status,
        state_version=version,
        occurred_at=body.orderCreatedAt,
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
) -> Customer:
    return Customer(external_id, name or generated_name(), email, avatar, click_id or None)


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
    customer: Customer,
    metadata: Any,
    source: str,
) -> Outcome:
    if mode == "deferred":
        key = f"customer:{customer_id}"
        return Outcome(key, _canonical({"clickId": click_id or None}), None, customer=customer)
    key = lead_key(customer_id, event_name)
    fields = _canonical({"clickId": click_id or None})
    row = Conversion(
        dedup_key=key,
        kind="lead",
        source=source,
        name=event_name,
        click_id=click_id or None,
        customer_id=customer_id,
        occurred_at=occurred_at,
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
    row = Conversion(
        dedup_key=key,
        kind="sale",
        source="track",
        name=body.eventName,
        click_id=body.clickId or None,
        customer_id=body.customerExternalId,
        value=body.amount,
        currency=body.currency,
        order_id=body.invoiceId,
        occurred_at=received_at,
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
    row = Conversion(
        dedup_key=key,
        kind="sale",
        source="event",
        name="sale",
        click_id=body.clickId or None,
        customer_id=customer_id,
        value=value,
        currency=body.currency,
        order_id=body.invoiceId,
        occurred_at=occurred,
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
    row = Conversion(
        dedup_key=key,
        kind="sale" if body.value else "conversion",
        source="server",
        name=body.name,
        visitor_id=body.visitor_id,
        session_id=body.session_id,
        order_id=body.order_id,
        value=body.value,
        currency=body.currency,
        occurred_at=body.timestamp or received_at,
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
    row = Conversion(
        dedup_key=key,
        kind="sale" if body.value else "conversion",
        source="browser",
        name=body.name,
        visitor_id=body.visitorId,
        session_id=session_id,
        click_id=body.clickId or None,
        order_id=body.orderId,
        value=body.value,
        currency=body.currency,
        metadata=body.metadata,
        url=body.url,
        occurred_at=received_at,
    )
    return Outcome(key, {}, row)
