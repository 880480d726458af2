"""Dub's answers: the bodies of ``POST /track/lead`` and ``/track/sale``, as Dub's SDKs read them.

Dub's official SDKs (PyPI ``dub`` 0.39.0, npm ``dub`` 0.73.5) validate every 200 answer
against generated models and raise ``ResponseValidationError`` when a required key is
missing, so these shapes are a contract, copied from those models:

- lead: ``{"click": {"id"}, "link": {…} | null, "customer": {"name", "email", "avatar",
  "externalId"}}``;
- sale: ``{"eventName", "customer": {"id", "name", "email", "avatar", "externalId"} | null,
  "sale": {"amount", "currency", "paymentProcessor", "invoiceId", "metadata"} | null}``.

Both SDKs ignore keys their models do not name (pydantic's default ``extra="ignore"``,
zod's default stripping), so firsttag's own answer (``id``, ``duplicate``, ``pending``, …)
rides along beside Dub's keys. firsttag has no short links, so ``link`` is always null,
which both models allow.

Pure: the web tier looks the customer up and passes what it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firsttag import schemas
from firsttag.customer_ids import customer_id

#: Dub's default when a sale names no payment processor (its request model's default).
DEFAULT_PAYMENT_PROCESSOR = "custom"


@dataclass(frozen=True)
class Profile:
    """What a Dub answer shows of a customer: the stored one, or the one being created."""

    external_id: str
    name: str | None = None
    email: str | None = None
    avatar: str | None = None

    def as_dub(self) -> dict[str, Any]:
        """The customer as Dub's lead answer has it (no ``id``)."""
        return {
            "name": self.name,
            "email": self.email,
            "avatar": self.avatar,
            "externalId": self.external_id,
        }


def lead_answer(click_id: str, customer: Profile, ours: dict[str, Any]) -> dict[str, Any]:
    """Dub's answer to ``track.lead``, with firsttag's answer ``ours`` as extra keys.

    ``click_id`` is the click the lead is attributed to: the one sent, or for a lead sent
    with ``clickId: ""``, the customer's (as Dub does).
    """
    return {**ours, "click": {"id": click_id}, "link": None, "customer": customer.as_dub()}


def sale_answer(
    site_id: str, body: schemas.TrackSale, customer: Profile, ours: dict[str, Any]
) -> dict[str, Any]:
    """Dub's answer to ``track.sale``, with firsttag's answer ``ours`` as extra keys.

    The customer's ``id`` is its public ``cus_…`` ID; the currency is given in lower case
    as Dub writes it (the store keeps ISO 4217 upper case).
    """
    return {
        **ours,
        "eventName": body.eventName,
        "customer": {"id": customer_id(site_id, customer.external_id), **customer.as_dub()},
        "sale": {
            "amount": body.amount,
            "currency": body.currency.lower(),
            "paymentProcessor": body.paymentProcessor or DEFAULT_PAYMENT_PROCESSOR,
            "invoiceId": body.invoiceId,
            "metadata": body.metadata,
        },
    }
