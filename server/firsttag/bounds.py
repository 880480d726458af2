"""What any stored value may be: the one definition the door and the worker share.

The HTTP handlers refuse at the door whatever breaks these bounds, with a 400 naming the
field, and the worker builds its rows with the same functions (:func:`dumps`,
:func:`json_default`), so an event that was answered 2xx can always be stored:

* JSON is nested at most :data:`MAX_DEPTH` levels (deeper bodies made ``json.loads``
  raise ``RecursionError``);
* numbers are finite and fit a 64-bit float: no ``NaN``/``Infinity`` literals (Python's
  ``json`` accepts them, strict parsers reading our API do not) and no ``1e400``, which
  ``float()`` and ``JSON.parse`` turn into Infinity;
* text has no NUL (PostgreSQL refuses it) and no lone surrogate (not encodable as UTF-8);
* timestamps are ISO 8601 date-times with an offset, ASCII digits, from
  :data:`MIN_TIME` to :data:`MAX_FUTURE` ahead of now.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

MAX_DEPTH = 32
MAX_NUMBER = sys.float_info.max
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(minutes=5)

# What Date.toISOString() and datetime.isoformat() write (the seeds' form), and RFC 3339's
# lower-case and space variants; not the ISO week or basic forms fromisoformat also reads.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unstorable(ValueError):
    """A value outside the bounds; ``path`` names where it is (``metadata.items.0``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class _Constant:
    """A ``NaN``/``Infinity`` literal, kept so that the walk can say where it was."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def loads(raw: bytes | str, decimals: bool = False) -> Any:
    """Parse a JSON body within the bounds; raise :class:`Unstorable` naming the place.

    With ``decimals``, numbers with a fraction become :class:`~decimal.Decimal`, so that a
    decimal amount is never rounded through a binary float.
    """
    try:
        value = json.loads(
            raw, parse_constant=_Constant, parse_float=Decimal if decimals else float
        )
    except RecursionError:
        raise Unstorable("body", f"is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, ints of > 4300 digits
        raise Unstorable("body", "is not valid JSON") from None
    _walk_json(value)
    return value


def _walk_json(root: Any) -> None:
    # Iterative, so that the check itself cannot run out of stack.
    stack: list[tuple[Any, str, int]] = [(root, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise Unstorable(path or "body", f"is nested more than {MAX_DEPTH} levels deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, _join(path, k), depth + 1) for k, v in items)
        elif isinstance(value, _Constant):
            raise Unstorable(path or "body", f"{value.literal} is not a JSON number")
        elif isinstance(value, float | Decimal | int) and not isinstance(value, bool):
            check_number(value, path or "body")


def check_number(value: float | Decimal | int, path: str) -> None:
    """Refuse a number that is not finite or does not fit a 64-bit float."""
    if isinstance(value, Decimal | float) and not (
        value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    ):
        raise Unstorable(path, "must be a finite number")
    if abs(value) > MAX_NUMBER:
        raise Unstorable(path, f"must be at most {MAX_NUMBER:.6g} in magnitude")


def check_text(root: Any) -> None:
    """Refuse NUL and lone surrogates in any string of ``root``, keys included."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, path or "body")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str):
                    _check_string(k, _join(path, k))
                stack.append((v, _join(path, k)))
        elif isinstance(value, list):
            stack.extend((v, _join(path, i)) for i, v in enumerate(value))


def _check_string(value: str, path: str) -> None:
    if "\x00" in value:
        raise Unstorable(path, "must not contain NUL (\\u0000)")
    if _SURROGATE.search(value):
        raise Unstorable(path, "must not contain an unpaired surrogate (not valid Unicode)")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 date-time with an offset, from MIN_TIME to MAX_FUTURE ahead; else ValueError."""
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(
            "must be an ISO 8601 date-time with an offset, e.g. 2026-04-10T12:34:56.000Z"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a valid date-time") from None
    # Compared before any arithmetic: year 1 minus an offset does not exist.
    if moment < MIN_TIME:
        raise ValueError(f"must not be before {MIN_TIME:%Y-%m-%d}")
    if moment - datetime.now(UTC) > MAX_FUTURE:
        raise ValueError("is more than 5 minutes in the future")
    return moment


def json_default(value: Any) -> Any:
    """JSON for exact decimals: an int when whole, else the nearest float; finite only."""
    if isinstance(value, Decimal):
        check_number(value, "number")  # also bounds int(): no million-digit integers
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """Compact, strict JSON (no NaN or Infinity) of a value within the bounds."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=json_default)
