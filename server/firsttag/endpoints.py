"""The endpoint registry: every write endpoint of the API, declared once.

Each :class:`Endpoint` names a path, its payload model, who may call it, the maker that
turns a valid payload into a :class:`~firsttag.conversions.Outcome`, and what it answers.
Everything that lists endpoints reads this tuple instead of keeping its own list:

- ``web/tracking.py`` registers one URL rule per server-side kind, and ``/api/v1/batch``
  accepts exactly the batchable kinds (:data:`BatchItem` is built from them below);
- ``apispec/openapi.py`` writes the ``POST`` operations of the OpenAPI document;
- ``apispec/markdown.py`` writes ``docs/api.md``;
- ``web/install.py`` shows the back-end examples of the install page.

So adding a payload kind is one schema (``schemas.py``), one maker (``conversions.py``)
and one :class:`Endpoint` line here; ``docs/adding-a-payload-kind.md`` shows the diff.
The browser endpoints (``web/api.py``) keep their hand-written handlers and appear here
only so that the documents describe them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from firsttag import conversions, schemas
from firsttag.conversions import Outcome

#: How a caller proves which site it speaks for:
#: ``body`` — the publishable key (pk_…) inside the JSON body, as the tag sends it;
#: ``publishable`` — ``Authorization: Bearer pk_…``, safe from a browser;
#: ``secret`` — ``Authorization: Bearer sk_…``, back ends only.
Auth = Literal["body", "publishable", "secret"]

AUTH_LABELS: dict[str, str] = {
    "body": "publishable key in the body",
    "publishable": "Authorization: Bearer pk_…",
    "secret": "secret key",
}

#: What every secret-key write endpoint can answer besides success: bad payload, bad key,
#: browser origin, idempotency conflict, too large, rate limit or backlog full, no Redis.
WRITE_ERRORS = (400, 401, 403, 409, 413, 429, 503)


@dataclass(frozen=True)
class Endpoint:
    """One ``POST`` endpoint: the single declaration the server and its documents read."""

    #: Short name; the ``type`` of a batch item and the ``track_<kind>`` view name.
    kind: str
    path: str
    #: The request body, validated by :func:`firsttag.schemas.parse`.
    payload: type[BaseModel]
    auth: Auth
    #: One line for the OpenAPI summary and the install page heading.
    summary: str
    #: Turns a valid payload and its receive time into an Outcome; ``None`` for the
    #: endpoints whose handlers are written out by hand (browser endpoints, the batch).
    maker: Callable[[Any, str], Outcome] | None = None
    #: Success status codes, the usual one first.
    ok: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = WRITE_ERRORS
    #: Whether ``/api/v1/batch`` accepts it as an item ``type``.
    batchable: bool = False
    #: ``clickId: ""`` means "the click of this customer", who must already be known (404).
    customer_must_exist: bool = False
    #: Parse JSON numbers with a fraction as Decimal, for amounts in major units.
    decimals: bool = False
    #: A body for the install page's back-end examples; ``None`` shows none.
    example: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def doc_line(self) -> str:
        """``POST <path> (<auth>)``, as ``docs/api.md`` heads the payload's section."""
        return f"POST {self.path} ({AUTH_LABELS[self.auth]})"


_ORDER_EXAMPLE = {
    "orderId": "ord_1",
    "storeId": "store_1",
    "organizationId": "org_1",
    "visitorId": "<visitorId from the form>",
    "sessionId": "<sessionId from the form>",
    "totalCents": 4900,
    "currency": "EUR",
    "platform": "custom",
    "status": "completed",
    "orderCreatedAt": "2026-01-01T12:00:00Z",
    "items": [{"productId": "mug", "quantity": 2, "priceCents": 2450, "totalCents": 4900}],
}

#: The endpoints that turn a payload into a conversion, in the order the documents list them.
SERVER_KINDS: tuple[Endpoint, ...] = (
    Endpoint(
        "order",
        "/api/webhooks/orders",
        schemas.OrderWebhook,
        "secret",
        "An order (Selektable webhook)",
        maker=conversions.from_order,
        batchable=True,
        example=_ORDER_EXAMPLE,
    ),
    Endpoint(
        "lead",
        "/api/v1/track/lead",
        schemas.TrackLead,
        "secret",
        "A lead (Dub track.lead)",
        maker=conversions.from_lead,
        # Always 200, as Dub's SDKs accept no other 2xx (``pending`` says a wait ran out).
        ok=(200,),
        errors=(404, *WRITE_ERRORS),
        batchable=True,
        customer_must_exist=True,
        example={
            "clickId": "<dub_id cookie>",
            "eventName": "Sign Up",
            "customerExternalId": "user_1",
        },
    ),
    Endpoint(
        "sale",
        "/api/v1/track/sale",
        schemas.TrackSale,
        "secret",
        "A sale (Dub track.sale)",
        maker=conversions.from_sale,
        # Always 200, as Dub's SDKs accept no other 2xx (``pending`` says a wait ran out).
        ok=(200,),
        errors=(404, *WRITE_ERRORS),
        batchable=True,
        customer_must_exist=True,
        example={
            "customerExternalId": "user_1",
            "amount": 4900,
            "currency": "EUR",
            "invoiceId": "inv_1",
        },
    ),
    Endpoint(
        "event",
        "/api/v1/events",
        schemas.LinkEvent,
        "secret",
        "A Lead or Sale event (short-link attribution)",
        maker=conversions.from_link_event,
        ok=(200, 202),
        batchable=True,
        decimals=True,
    ),
    Endpoint(
        "conversion",
        "/api/v1/conversions",
        schemas.ServerConversion,
        "secret",
        "A server-side conversion (Mark)",
        maker=conversions.from_server_conversion,
        batchable=True,
        example={
            "name": "Subscription Activated",
            "visitor_id": "<visitorId>",
            "order_id": "sub_1",
            "value": 4900,
            "currency": "EUR",
        },
    ),
)

BATCH_KINDS: tuple[str, ...] = tuple(e.kind for e in SERVER_KINDS if e.batchable)


class BatchItem(schemas.Payload):
    """One event of a batch: its endpoint's type and that endpoint's payload."""

    # Literal of a tuple is the Literal of its members: the batchable kinds above.
    type: Literal[BATCH_KINDS]  # type: ignore[valid-type]
    data: dict[str, Any]


class Batch(schemas.Payload):
    """``POST /api/v1/batch``: up to 500 events, each answered on its own."""

    events: list[BatchItem] = Field(min_length=1, max_length=500)

    # Each item's data is checked when it is parsed on its own: one bad item is rejected
    # alone, as any other invalid item is.
    check_text: ClassVar[bool] = False


#: Every ``POST`` endpoint of the API, in the order the documents list them.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "session",
        "/api/v1/sessions",
        schemas.SessionRegistration,
        "body",
        "Register a tab session",
        errors=(400, 401, 403, 413),
    ),
    Endpoint(
        "session_convert",
        "/api/v1/sessions/convert",
        schemas.SessionConvert,
        "publishable",
        "Mark a session verified",
        errors=(400, 401, 404),
    ),
    Endpoint(
        "beacon",
        "/api/v1/beacon",
        schemas.BrowserConversion,
        "body",
        "Browser conversion",
        ok=(202,),
        errors=(400, 401, 403, 413),
    ),
    *SERVER_KINDS,
    Endpoint(
        "batch",
        "/api/v1/batch",
        Batch,
        "secret",
        "Up to 500 events, answered per item",
        errors=(400, 401, 403, 413),
    ),
)

#: Models that appear only inside a payload, with where: ``docs/api.md`` lists them too.
NESTED: tuple[tuple[type[BaseModel], str], ...] = (
    (schemas.OrderItem, "OrderWebhook.items[]"),
    (BatchItem, "Batch.events[]"),
)


def server_kind(kind: str) -> Endpoint:
    """The server-side endpoint of ``kind`` (KeyError for a kind that has none)."""
    return _BY_KIND[kind]


_BY_KIND = {e.kind: e for e in SERVER_KINDS}
