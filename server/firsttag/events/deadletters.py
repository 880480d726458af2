"""Dead letters: events the worker could not store, kept in Redis until a person acts.

The drainer records an event here (atomically with trimming it from the buffer, see
:mod:`firsttag.events.drain`) when the event itself makes storing fail: it is not JSON, too
deep to parse, not an event, lacks a field, carries a value the worker's parsing or the
database refuses. Nothing else waits behind it. ``firsttag failed`` lists them, replays
them through the normal buffer after a fix (``--requeue``) or removes them (``--drop``).

They live in one Redis stream, so every process sees the same letters, in the order they
failed, under IDs that Redis assigns (``<ms>-<n>``). Each entry holds the reason, the
exception (type and message, never the SQL or its parameters), the time, the site and
kind when they could be read, and the raw event exactly as it was buffered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis import Redis
from sqlalchemy.exc import DBAPIError

from firsttag.events.buffer import EventBuffer
from firsttag.wire import envelope

DEAD_LETTER_KEY = "firsttag:dead-letters"
#: About how many letters the stream keeps (XADD MAXLEN ~, in drain.py's trim script): the
#: oldest go first. Enough for any honest failure to be seen and replayed; a flood of
#: poison cannot fill Redis (which answers every site 503 when full).
MAX_LETTERS = 100_000
# Before the stream, dead letters were bare events in a list; `firsttag failed` moves any
# it finds into the stream so they can be listed and replayed like the others.
LEGACY_KEY = "firsttag:dead-letter"

# Reasons, from the stage that failed.
UNDECODABLE = "undecodable"  # not JSON, or too deep for json.loads
NOT_AN_EVENT = "not_an_event"  # JSON, but not an object with a known kind
INVALID_EVENT = "invalid_event"  # the worker's parsing refused a field or value
REFUSED_BY_DATABASE = "refused_by_database"  # a constraint, a type, a range of the store

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class DeadLetter:
    """One event the worker could not store."""

    id: str
    reason: str
    error: str
    failed_at: str
    site: str
    kind: str
    event: bytes

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready form; the event is shown as text (undecodable bytes replaced)."""
        return {
            "id": self.id,
            "reason": self.reason,
            "error": self.error,
            "failedAt": self.failed_at,
            "site": self.site,
            "kind": self.kind,
            "event": self.event.decode("utf-8", "replace"),
        }


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, short and without SQL or bound parameters.

    SQLAlchemy's message repeats the statement and every parameter; the driver's own
    message (``exc.orig``) says what was refused and is enough to fix it. The type is
    SQLAlchemy's (``IntegrityError``, ``DataError``…), the same for every database.
    """
    shown: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        shown = exc.orig
    message = str(shown).split("\n", 1)[0]
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: bytes) -> str:
        return fields.get(name, b"").decode("utf-8", "replace")

    return DeadLetter(
        id=entry_id.decode(),
        reason=text(b"reason"),
        error=text(b"error"),
        failed_at=text(b"failedAt"),
        site=text(b"site"),
        kind=text(b"kind"),
        event=fields.get(b"event", b""),
    )


def letters(redis: Redis, ids: list[str] | None = None) -> list[DeadLetter]:
    """The dead letters with ``ids`` (all when None), oldest first; unknown IDs are skipped."""
    if ids is None:
        return [_letter(i, f) for i, f in redis.xrange(DEAD_LETTER_KEY)]
    found = []
    for wanted in ids:
        found += [_letter(i, f) for i, f in redis.xrange(DEAD_LETTER_KEY, wanted, wanted)]
    return found


def count(redis: Redis) -> int:
    """How many dead letters there are."""
    return int(redis.xlen(DEAD_LETTER_KEY))


def summary(redis: Redis) -> dict[str, Any]:
    """Count, count per reason and the oldest letter's time (None when there are none)."""
    all_letters = letters(redis)
    return {
        "count": len(all_letters),
        "reasons": dict(Counter(letter.reason for letter in all_letters).most_common()),
        "oldest": all_letters[0].failed_at if all_letters else None,
    }


def requeue(redis: Redis, buffer: EventBuffer, ids: list[str] | None = None) -> list[str]:
    """Append the letters with ``ids`` (all when None) to the buffer again; returns their IDs.

    Each event goes through the normal push (byte bounds included: ``BacklogFull`` stops
    the replay, the letters not yet replayed stay) and no idempotency claim is re-created:
    the store's unique keys already make a replay of something stored a no-op. A letter is
    removed only after its event is buffered, so a crash in between replays it twice at
    worst, which the store absorbs.
    """
    done = []
    for letter in letters(redis, ids):
        site = letter.site or envelope(letter.event)[0] or ""
        buffer.push_many(site, [letter.event])
        redis.xdel(DEAD_LETTER_KEY, letter.id)
        done.append(letter.id)
    return done


def drop(redis: Redis, ids: list[str]) -> int:
    """Remove the letters with ``ids`` for good; returns how many existed."""
    return int(redis.xdel(DEAD_LETTER_KEY, *ids)) if ids else 0


def adopt_legacy(redis: Redis, failed_at: str) -> int:
    """Move events from the old dead-letter list into the stream; returns how many."""
    moved = 0
    # Copy, then remove: a crash in between leaves a duplicate letter, never a lost one.
    while (raw := redis.lindex(LEGACY_KEY, 0)) is not None:
        site, _ = envelope(raw)
        redis.xadd(
            DEAD_LETTER_KEY,
            {
                "reason": "legacy",
                "error": "dead-lettered by an older firsttag",
                "failedAt": failed_at,
                "site": site or "",
                "kind": "",
                "event": raw,
            },
        )
        redis.lpop(LEGACY_KEY)
        moved += 1
    return moved
