"""The payload schemas: the one definition of each request body.

The validator (:func:`parse`), the OpenAPI document (:mod:`firsttag.apispec.openapi`) and the
field tables of docs/api.md all come from these models; :mod:`firsttag.endpoints` says
which endpoint takes which. Models are strict: ``"12"`` is not a number and ``12`` is not
a string, because a tracking integration that sends the wrong type has a bug its owner
wants to hear about.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from firsttag import bounds, money, store
from firsttag.sites import DEFAULT_MAX_BROWSER_VALUE

# Identifiers made by the tag: 32 hex characters, but accept any URL-safe token so that
# sites migrating from other tags keep their existing IDs.
TagId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ClickId = Annotated[str, Field(max_length=190, pattern=r"^[A-Za-z0-9_-]*$")]
URL_MAX = 2048


def _truncate_url(value: Any) -> Any:
    # A page URL sent by the tag is context, not an identifier: a long one is cut, not
    # refused, so that a session or conversion is never lost to a long query string.
    return value[:URL_MAX] if isinstance(value, str) else value


Url = Annotated[
    str,
    BeforeValidator(_truncate_url),
    Field(max_length=URL_MAX, description=f"Cut to {URL_MAX} characters."),
]
SiteKey = Annotated[str, Field(min_length=1, max_length=64)]

METADATA_MAX_CHARS = 10_000
# The store's dedup_key column; a lead's key holds its customer ID and event name.
DEDUP_KEY_MAX = 512


def lead_key(customer_id: str, event_name: str) -> str:
    """A lead is counted once per customer and event name.

    Defined here, where a lead is refused when its key would not fit the store, and used
    by :mod:`firsttag.conversions` as the lead's idempotency key.
    """
    return "lead:" + json.dumps([customer_id, event_name], separators=(",", ":"))


def _timestamp(value: str) -> str:
    return store.format_time(bounds.parse_timestamp(value))


def _currency(value: str) -> str:
    return money.normalise_currency(value)


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    size = len(bounds.dumps(value)) if value else 0
    if size > METADATA_MAX_CHARS:
        raise ValueError(f"must be at most {METADATA_MAX_CHARS} characters as JSON")
    return value


# ISO 8601 with an offset or Z, normalised to the store's UTC format.
Timestamp = Annotated[
    str,
    Field(
        max_length=64,
        description="ISO 8601 with an offset or Z, from 2000-01-01 to 5 min ahead.",
    ),
    AfterValidator(_timestamp),
]
# ISO 4217, any case in, upper case out.
CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, any case (stored upper case)."),
    AfterValidator(_currency),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description=f"Free-form JSON object, at most {METADATA_MAX_CHARS:,} characters."),
    AfterValidator(_metadata),
]
IDENTIFIER_MAX = 190
Identifier = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX)]
MinorUnits = Annotated[int, Field(ge=0, le=money.MAX_MINOR_UNITS)]


class _Payload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", str_strip_whitespace=False)
    #: Refuse text the database cannot hold (NUL, lone surrogates) anywhere in the body.
    check_text: ClassVar[bool] = True

    def cross_check(self) -> list[dict[str, str]]:
        """Errors that involve several fields, once each field is valid on its own."""
        return []


#: The base of every payload model, also of those declared with the endpoint registry
#: (the batch envelope in :mod:`firsttag.endpoints`, whose item types it lists).
Payload = _Payload


class SessionRegistration(_Payload):
    """``POST /api/v1/sessions``: the tag registers a new tab session (publishable key)."""

    siteKey: SiteKey = Field(description="The site's publishable key (pk_…).")
    visitorId: TagId = Field(description="Visitor ID kept in localStorage.")
    sessionId: TagId = Field(description="Session ID kept in sessionStorage.")
    url: Url | None = Field(None, description="The landing page URL.")
    referrer: Url | None = Field(None, description="document.referrer of the landing page.")
    clickId: ClickId | None = Field(None, description="The dub_id click ID, when there is one.")
    webdriver: bool | None = Field(None, description="navigator.webdriver: an automated browser.")


class SessionConvert(_Payload):
    """``POST /api/v1/sessions/convert``: mark a session as a verified human (ClickLens)."""

    sessionKey: str = Field(
        min_length=1, max_length=512, description="The cl_sk value from sessionStorage."
    )


class BrowserConversion(_Payload):
    """``POST /api/v1/beacon``: a conversion sent by ``firsttag.convert()``."""

    siteKey: SiteKey = Field(description="The site's publishable key (pk_…).")
    id: TagId = Field(description="Made by the tag per conversion: a re-send is not counted again.")
    name: str = Field(min_length=1, max_length=200, description="Conversion name, e.g. Purchase.")
    visitorId: TagId
    sessionId: TagId | None = None
    sessionKey: str | None = Field(None, max_length=512)
    clickId: ClickId | None = None
    url: Url | None = None
    orderId: str | None = Field(None, min_length=1, max_length=190)
    value: int | None = Field(
        None,
        ge=0,
        le=money.MAX_MINOR_UNITS,
        description="Amount in minor units of currency (cents); at most the site's max "
        f"browser value (default {DEFAULT_MAX_BROWSER_VALUE:,}). Reported, not confirmed: "
        "not revenue unless the site counts browser revenue.",
    )
    currency: CurrencyCode | None = Field(None, description="ISO 4217 code.")
    metadata: Metadata = None


class OrderItem(_Payload):
    """One line of an order (Selektable seed)."""

    productId: Identifier
    quantity: int = Field(ge=1, le=1_000_000)
    priceCents: MinorUnits = Field(description="Unit price in minor units.")
    totalCents: MinorUnits = Field(description="Line total: priceCents × quantity.")

    @model_validator(mode="after")
    def _line_adds_up(self) -> OrderItem:
        expected = self.priceCents * self.quantity
        if self.totalCents != expected:
            raise ValueError(f"totalCents must equal quantity × priceCents ({expected})")
        return self


class OrderWebhook(_Payload):
    """``POST /api/webhooks/orders``: an order or lead-gen conversion (Selektable seed).

    An order is keyed by ``orderId``: sending it again with another ``status`` (or
    ``refundedCents``) updates it; an update older than the stored one is ignored.
    """

    orderId: Identifier = Field(description="Unique per site: order or form submission ID.")
    storeId: Identifier
    organizationId: Identifier
    visitorId: Identifier = Field(description="firsttag.getIdentity().visitorId")
    sessionId: Identifier = Field(description="firsttag.getIdentity().sessionId")
    totalCents: MinorUnits = Field(description="Order total in minor units; 0 for lead gen.")
    currency: CurrencyCode
    platform: Literal["custom"]
    status: Literal["pending", "processing", "on-hold", "completed", "refunded", "cancelled"]
    orderCreatedAt: Timestamp
    items: list[OrderItem] = Field(max_length=1000, description="[] for lead gen.")
    refundedCents: MinorUnits | None = Field(None, description="Partial refund, minor units.")
    updatedAt: Timestamp | None = Field(
        None, description="Time of this status: a later one wins (default: time received)."
    )

    def cross_check(self) -> list[dict[str, str]]:
        """The order total is the sum of its items; a refund cannot exceed it."""
        errors = []
        if self.items and sum(i.totalCents for i in self.items) != self.totalCents:
            total = sum(i.totalCents for i in self.items)
            errors.append(
                {"field": "totalCents", "message": f"must equal the sum of items ({total})"}
            )
        if self.refundedCents is not None and self.refundedCents > self.totalCents:
            errors.append({"field": "refundedCents", "message": "must not exceed totalCents"})
        return errors


LeadMode = Literal["async", "wait", "deferred"]


class TrackLead(_Payload):
    """``POST /api/v1/track/lead`` (Dub seed)."""

    clickId: str = Field(
        max_length=190,
        pattern=r"^[A-Za-z0-9_-]*$",
        description='The dub_id cookie; "" to use the click of an existing (deferred) customer.',
    )
    eventName: str = Field(min_length=1, max_length=255)
    customerExternalId: Identifier
    customerName: str | None = Field(None, max_length=255)
    customerEmail: str | None = Field(None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    customerAvatar: str | None = Field(None, max_length=2048)
    mode: LeadMode = "async"
    metadata: Metadata = None

    def cross_check(self) -> list[dict[str, str]]:
        """The lead's idempotency key (customer ID and event name) must fit the store."""
        if len(lead_key(self.customerExternalId, self.eventName)) > DEDUP_KEY_MAX:
            message = "with customerExternalId is too long for a lead's key (escaped as JSON)"
            return [{"field": "eventName", "message": message}]
        return []


class TrackSale(_Payload):
    """``POST /api/v1/track/sale`` (Dub seed). ``amount`` is in minor units."""

    customerExternalId: Identifier
    amount: MinorUnits
    currency: CurrencyCode = "usd"
    eventName: str = Field("Purchase", min_length=1, max_length=255)
    paymentProcessor: str | None = Field(None, max_length=64)
    invoiceId: Identifier | None = Field(None, description="A sale is counted once per invoice.")
    leadEventName: str | None = Field(None, max_length=255)
    clickId: str | None = Field(None, max_length=190, pattern=r"^[A-Za-z0-9_-]*$")
    mode: Literal["async", "wait"] = "async"
    metadata: Metadata = None


class LinkEvent(_Payload):
    """``POST /api/v1/events``: the Lead and Sale payloads of seed 003 as written.

    ``amount`` is a decimal in major units (199.0 USD) and is converted exactly.
    """

    event: Literal["lead", "sale"]
    timestamp: Timestamp | None = None
    clickId: str | None = Field(None, max_length=190, pattern=r"^[A-Za-z0-9_-]*$")
    customerExternalId: Identifier | None = None
    email: str | None = Field(None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=255)
    mode: LeadMode = "async"
    currency: CurrencyCode | None = None
    amount: Decimal | int | None = Field(None, ge=0)
    invoiceId: Identifier | None = None
    metadata: Metadata = None

    def customer_id(self) -> str | None:
        """The stable identifier: customerExternalId, else email, else phone."""
        return self.customerExternalId or self.email or self.phone

    def cross_check(self) -> list[dict[str, str]]:
        """A stable identifier is required; a sale needs an amount valid in its currency."""
        errors = []
        customer_id = self.customer_id()
        if not customer_id:
            errors.append({"field": "customerExternalId", "message": "send it, or email, or phone"})
        elif len(customer_id) > IDENTIFIER_MAX:
            # The email stands in for the customer ID: it must fit the same column.
            field = "email" if customer_id == self.email else "phone"
            errors.append(
                {"field": field, "message": f"as the customer ID, at most {IDENTIFIER_MAX} chars"}
            )
        if self.event == "sale":
            if self.amount is None:
                errors.append({"field": "amount", "message": "is required for a sale"})
            if self.currency is None:
                errors.append({"field": "currency", "message": "is required for a sale"})
            if self.amount is not None and self.currency is not None:
                try:
                    money.to_minor_units(self.amount, self.currency)
                except ValueError as exc:
                    errors.append({"field": "amount", "message": str(exc)})
        return errors


class ServerConversion(_Payload):
    """``POST /api/v1/conversions``: a server-side conversion (seed 002).

    ``value`` is in minor units (4900 = 49.00 EUR); ``visitor_id`` links it to the
    browser's ``firsttag.getVisitorId()``.
    """

    name: str = Field(min_length=1, max_length=200)
    visitor_id: Identifier | None = None
    session_id: Identifier | None = None
    order_id: Identifier | None = Field(None, description="Counted once per order_id.")
    value: MinorUnits | None = None
    currency: CurrencyCode | None = None
    timestamp: Timestamp | None = None
    metadata: Metadata = None


Model = TypeVar("Model", bound=BaseModel)


class InvalidPayload(Exception):
    """A body that does not fit its model, naming every bad field and why.

    Pure, so that the CLI and the worker can parse too; the web tier answers it as a 400
    ``{"error": {"code", "message", "fields"}}`` (:mod:`firsttag.web.errors`).
    """

    def __init__(self, code: str, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        #: ``invalid_body`` (not a JSON object) or ``invalid_fields``.
        self.code = code
        self.message = message
        #: ``[{"field": dotted path, "message": why}, …]``
        self.fields = fields


def parse(model: type[Model], data: Any) -> Model:
    """Validate ``data`` against ``model``; raise :class:`InvalidPayload` naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidPayload(
            "invalid_body",
            "request body must be a JSON object",
            [{"field": "body", "message": "must be a JSON object"}],
        )
    if getattr(model, "check_text", True):
        try:
            bounds.check_text(data)
        except bounds.Unstorable as exc:
            raise _invalid([{"field": exc.path, "message": exc.message}]) from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": _message(err)}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise _invalid(fields) from None
    fields = parsed.cross_check() if isinstance(parsed, _Payload) else []
    if fields:
        raise _invalid(fields)
    return parsed


def _message(err: Any) -> str:
    # "Value error, X" reads oddly in an API answer; keep X.
    return str(err["msg"]).removeprefix("Value error, ")


def _invalid(fields: list[dict[str, str]]) -> InvalidPayload:
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return InvalidPayload("invalid_fields", summary, fields)


class CustomerUpdate(_Payload):
    """``PATCH /customers/{id}`` (Dub's ``customers.update``): only the fields sent change.

    firsttag keeps a customer's name, email and avatar; the Dub fields it does not keep
    (``stripeCustomerId``, ``country``, ``subscriptionCanceledAt``) are refused by name
    rather than silently dropped. ``externalId`` may only repeat the current one: firsttag
    files conversions under it, so a new one would split the person (docs/privacy.md).
    """

    name: str | None = Field(None, min_length=1, max_length=255)
    email: str | None = Field(None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    avatar: str | None = Field(None, max_length=2048)
    externalId: Identifier | None = None
    stripeCustomerId: Any = None
    country: Any = None
    subscriptionCanceledAt: Any = None

    def cross_check(self) -> list[dict[str, str]]:
        """A name may change but not be removed; fields firsttag does not keep are refused."""
        errors = []
        if "name" in self.model_fields_set and self.name is None:
            errors.append({"field": "name", "message": "firsttag keeps a name for every customer"})
        for field in ("stripeCustomerId", "country", "subscriptionCanceledAt"):
            if getattr(self, field) is not None:
                errors.append({"field": field, "message": "firsttag does not keep this field"})
        return errors
