"""The payload schemas: the one definition of each request body.

The validator (:func:`parse`), the OpenAPI document (:mod:`server.openapi`) and the
README's field tables all come from these models. Models are strict: ``"12"`` is not a
number and ``12`` is not a string, because a tracking integration that sends the wrong
type has a bug its owner wants to hear about.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import APIError

# Identifiers made by the tag: 32 hex characters, but accept any URL-safe token so that
# sites migrating from other tags keep their existing IDs.
TagId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ClickId = Annotated[str, Field(max_length=190, pattern=r"^[A-Za-z0-9_-]*$")]
Url = Annotated[str, Field(max_length=2048)]
SiteKey = Annotated[str, Field(min_length=1, max_length=64)]

METADATA_MAX_CHARS = 10_000


class _Payload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", str_strip_whitespace=False)


class SessionRegistration(_Payload):
    """``POST /api/v1/sessions``: the tag registers a new tab session (publishable key)."""

    siteKey: SiteKey = Field(description="The site's publishable key (pk_…).")
    visitorId: TagId = Field(description="Visitor ID kept in localStorage.")
    sessionId: TagId = Field(description="Session ID kept in sessionStorage.")
    url: Url | None = Field(None, description="The landing page URL.")
    referrer: Url | None = Field(None, description="document.referrer of the landing page.")
    clickId: ClickId | None = Field(None, description="The dub_id click ID, when there is one.")


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
        None, ge=0, le=10**15, description="Amount in minor units of currency (cents)."
    )
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    metadata: dict[str, Any] | None = Field(
        None, description=f"Free-form JSON object, at most {METADATA_MAX_CHARS:,} characters."
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > METADATA_MAX_CHARS:
            raise ValueError(f"must be at most {METADATA_MAX_CHARS} characters as JSON")
        return value


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any) -> Model:
    """Validate ``data`` against ``model``; raise one 400 listing every bad field."""
    if not isinstance(data, dict):
        raise APIError(400, "invalid_body", "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise APIError(400, "invalid_fields", summary, fields) from None


ALL_PAYLOADS: tuple[type[BaseModel], ...] = (SessionRegistration, SessionConvert, BrowserConversion)
