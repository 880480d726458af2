"""The event wire format: the contract between the web tier and the worker.

The web tier appends events to the Redis buffer; workers, possibly of another release
(a rolling deploy), read them back. Every event is one JSON object::

    {"kind": "conversion", "site": "<site id>", "receivedAt": "<UTC time>", "v": 2,
     "data": {...camelCase fields of the kind...}, "claims": {...}}

* ``kind``, ``site`` and ``receivedAt`` come first and in this order, so
  :func:`envelope` reads them from an event too broken to parse (dead letters, byte
  counters, /readyz);
* ``v`` is the format version: this release writes :data:`VERSION` and reads it and the
  version before (``v`` absent means 1: events written before the field existed). Version
  2 only adds ``v``; the data of each kind is unchanged;
* ``data`` holds the fields of one body class below, named in camelCase;
* ``claims`` (optional) names the idempotency claims pushed with the event, so a worker
  that dead-letters it can release them.

Decoding checks the shape (a known kind, a known version, every required field present),
not the values: a value the worker or the database refuses fails when its row is written,
and only that event becomes a dead letter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, ClassVar

import msgspec

from firsttag.bounds import json_default

#: The format version this release writes.
VERSION = 2
#: The oldest version this release still reads (a worker is upgraded before the web tier).
OLDEST_READABLE = VERSION - 1


class WireError(ValueError):
    """An event of a known kind that does not have the shape of its format version."""


class UnknownKind(WireError):
    """Not an event at all: not a JSON object, or of a kind no version ever had."""


@dataclass(frozen=True)
class Session:
    """A tab session registered by the tag (``POST /api/v1/sessions``)."""

    KIND: ClassVar[str] = "session"
    session_id: str
    visitor_id: str
    click_id: str | None = None
    url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    bot: bool = False


@dataclass(frozen=True)
class Verification:
    """A session marked verified (``POST /api/v1/sessions/convert``)."""

    KIND: ClassVar[str] = "verification"
    session_id: str


@dataclass(frozen=True)
class Customer:
    """A customer created by a lead (Dub's ``customerExternalId`` and its click)."""

    KIND: ClassVar[str] = "customer"
    external_id: str
    name: str
    email: str | None = None
    avatar: str | None = None
    click_id: str | None = None


@dataclass(frozen=True)
class Conversion:
    """A conversion, lead, sale or order state, as the store keeps it.

    ``kind`` is the conversion's kind (``lead``, ``sale``, ``conversion``), not the
    event's; ``fingerprint`` is what a re-send must repeat; ``click_from_customer`` asks
    the worker to take the click of that customer when ``click_id`` is empty.
    """

    KIND: ClassVar[str] = "conversion"
    dedup_key: str
    kind: str
    source: str
    name: str
    occurred_at: str
    visitor_id: str | None = None
    session_id: str | None = None
    click_id: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    value: int | None = None
    refunded: int = 0
    currency: str | None = None
    status: str | None = None
    state_version: str | None = None
    details: Any = None
    metadata: Any = None
    url: str | None = None
    fingerprint: Any = None
    click_from_customer: str | None = None


@dataclass(frozen=True)
class Erasure:
    """A customer erased (``DELETE /customers/{id}``, see docs/privacy.md).

    Queued behind the events received before it, so the worker erases the person after
    storing those (anonymised) and never lets one of them bring the person back.
    """

    KIND: ClassVar[str] = "erasure"
    external_id: str


Body = Session | Verification | Customer | Conversion | Erasure
BODIES: dict[str, type[Body]] = {
    b.KIND: b for b in (Session, Verification, Customer, Conversion, Erasure)
}


@dataclass(frozen=True)
class Event:
    """One buffered event: whose, when received, its typed body and the claims it carries."""

    site: str
    received_at: str
    body: Body
    claims: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The event's kind on the wire (``session``, ``verification``…)."""
        return self.body.KIND


@cache  # a few dozen field names, met once per field of every event in a drain
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def data_of(body: Body) -> dict[str, Any]:
    """``body``'s fields as the wire (and the public API) names them, in camelCase."""
    return {_camel(f.name): getattr(body, f.name) for f in fields(body)}


def body_from(kind: str, data: Mapping[str, Any]) -> Body:
    """The body of ``kind`` from its camelCase ``data``; unknown keys are ignored.

    Raises :class:`WireError` for an unknown kind or a missing required field.
    """
    cls = BODIES.get(kind)
    if cls is None:
        raise UnknownKind(f"not an event of a known kind: {str(kind)[:100]!r}")
    values = dict(_defaults(cls))
    for field_name, name, required in _wire_fields(cls):
        if name in data:
            values[field_name] = data[name]
        elif required:
            raise WireError(f"{kind} event without {name}")
    # The same object cls(**values) makes, without its __init__: a frozen dataclass sets
    # each field through object.__setattr__, two thirds of building a body (the bodies
    # have no __post_init__ and no field with a default factory).
    body = object.__new__(cls)
    body.__dict__.update(values)
    return body


@cache
def _wire_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    # (field, wire name, required) per body class: dataclasses.fields() on every event
    # was a tenth of the worker's decoding.
    return tuple((f.name, _camel(f.name), f.default is MISSING) for f in fields(cls))


@cache
def _defaults(cls: type) -> dict[str, Any]:
    # The default of each optional field (read-only: body_from copies it).
    for f in fields(cls):
        assert f.default_factory is MISSING, f"{cls.__name__}.{f.name}: use a plain default"
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def encode(event: Event) -> str:
    """The buffer's representation of ``event``, in format :data:`VERSION`."""
    wire: dict[str, Any] = {
        "kind": event.kind,
        "site": event.site,
        "receivedAt": event.received_at,
        "v": VERSION,
        "data": data_of(event.body),
    }
    if event.claims:
        wire["claims"] = dict(event.claims)
    return json.dumps(wire, separators=(",", ":"), allow_nan=False, default=json_default)


def decode(raw: bytes | str) -> Event:
    """The event ``raw`` holds, written in format :data:`VERSION` or the one before.

    Raises ``ValueError`` (``json.JSONDecodeError``, :class:`WireError`) or
    ``RecursionError`` when ``raw`` is not an event this release can read.
    """
    return from_json(parse(raw))


_FAST = msgspec.json.Decoder()


def parse(raw: bytes | str) -> Any:
    """``raw`` parsed as JSON: the values and the errors of ``json.loads``, faster.

    msgspec parses (about 8 times faster than the standard library, and unlike orjson it
    keeps integers beyond 64 bits as integers); whatever it refuses (NaN, a lone
    surrogate, UTF-16, too deep) is handed to ``json.loads``, whose verdict stands, so an
    event is accepted or refused, and dead-lettered with the error, exactly as before.
    """
    try:
        return _FAST.decode(raw)
    except Exception:
        return json.loads(raw)


def from_json(wire: Any) -> Event:
    """The event of an already parsed JSON object (see :func:`decode`)."""
    kind = wire.get("kind") if isinstance(wire, dict) else None
    if not isinstance(kind, str) or kind not in BODIES:
        raise UnknownKind(f"not an event of a known kind: {str(kind)[:100]!r}")
    version = wire.get("v", 1)
    if version not in range(OLDEST_READABLE, VERSION + 1):
        raise WireError(
            f"format version {str(version)[:20]!r}; this worker reads "
            f"{OLDEST_READABLE} to {VERSION} (upgrade it, then requeue)"
        )
    for name in ("site", "receivedAt"):
        if not isinstance(wire.get(name), str):
            raise WireError(f"event without {name}")
    data = wire.get("data")
    if not isinstance(data, dict):
        raise WireError("event without data")
    claims = wire.get("claims")
    claims = claims if isinstance(claims, dict) else {}
    return Event(
        wire["site"],
        wire["receivedAt"],
        body_from(kind, data),
        {k: v for k, v in claims.items() if isinstance(k, str) and isinstance(v, str)},
    )


_ENVELOPE = re.compile(rb'^\{"kind":"[^"\\]*","site":"([^"\\]*)","receivedAt":"([^"\\]*)"')


def envelope(raw: bytes) -> tuple[str | None, str | None]:
    """The site ID and receipt time of a buffered event, without parsing its body.

    Read from the fixed prefix :func:`encode` writes (in every format version), so it
    works for an event whose body ``json.loads`` refuses (too deep, truncated); (None,
    None) for anything else.
    """
    match = _ENVELOPE.match(raw)
    if match is None:
        return None, None
    return match.group(1).decode(), match.group(2).decode()
