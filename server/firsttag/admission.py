"""Admission: the one place that decides what a repeated request is.

An outcome (see :mod:`firsttag.conversions`) arrives under an idempotency key. Admission
judges it against what was received before under that key and answers one of:

* ``new`` — never seen: its events are appended to the buffer with a *claim*;
* ``update`` — an order state with a newer version: appended, the claim moves on;
* ``duplicate`` — the same values again: nothing is appended;
* ``stale`` — an order state older than the one recorded: nothing is appended;
* ``conflict`` — the key again with other values: refused (the web tier answers 409).

"Before" is the claim in Redis (``firsttag:claim:<site>:<key>``, set in the same atomic
step as the events it stands for, kept :data:`~firsttag.events.buffer.CLAIM_TTL_S`), or,
when Redis has none (expired, or never set by an older release), the stored row. The
claim is WATCHed while judging, so two requests racing with one key are judged one after
the other. A dry run (``?validate=1``) judges the same way and attributes, but claims and
appends nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from redis.exceptions import WatchError
from sqlalchemy import Engine

from firsttag import store
from firsttag.analytics.attribution import attribute
from firsttag.conversions import Outcome
from firsttag.events.buffer import EventBuffer
from firsttag.sites import Site
from firsttag.wire import Event, encode

CLAIM_PREFIX = "firsttag:claim:"

# Waiting for the worker to store a ``mode: wait`` conversion: poll soon (it usually
# takes a few ms), then back off, so a slow worker costs a couple of dozen queries per
# wait, not two hundred.
WAIT_SECONDS = 10.0
WAIT_FIRST_POLL_S = 0.01
WAIT_MAX_POLL_S = 0.5

Verdict = Literal["new", "update", "duplicate", "stale", "conflict"]


@dataclass
class Decision:
    """What to do with an outcome given what was received before under its key."""

    verdict: Verdict
    first_received_at: str | None = None
    differing: list[str] = field(default_factory=list)


def judge(outcome: Outcome, prior: dict[str, Any] | None) -> Decision:
    """Compare an outcome with the earlier record of its key (a claim or the stored row).

    ``prior`` has the claim's shape: ``fields`` (the fingerprint), ``state``, ``version``
    and ``firstReceivedAt``; None when the key was never received.
    """
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


def claim_key(site_id: str, key: str) -> str:
    """The Redis key of the claim on idempotency key ``key`` of site ``site_id``."""
    return f"{CLAIM_PREFIX}{site_id}:{key}"


def conversion_event(site_id: str, outcome: Outcome, received_at: str) -> Event:
    """The buffer event that stores ``outcome``'s conversion, with its fingerprint."""
    assert outcome.conversion is not None  # a deferred lead stores only its customer
    body = replace(
        outcome.conversion,
        fingerprint=outcome.fields,
        click_from_customer=outcome.click_from_customer,
    )
    return Event(site_id, received_at, body)


def _dumps(claim: dict[str, Any]) -> str:
    return json.dumps(claim, separators=(",", ":"))


class Admission:
    """Admits outcomes into ``buffer``, judging repeats by claims and by ``engine``'s store."""

    def __init__(self, buffer: EventBuffer, engine: Engine) -> None:
        self.buffer = buffer
        self.engine = engine

    def remembered(self, site_id: str, key: str) -> dict[str, Any] | None:
        """The claim Redis holds on ``key``, read without claiming anything."""
        raw = self.buffer.redis.get(claim_key(site_id, key))
        return json.loads(raw) if raw else None

    def customer_known(self, site_id: str, external_id: str) -> bool:
        """Whether a customer was admitted (claimed) or stored under ``external_id``."""
        return self.remembered(
            site_id, f"customer:{external_id}"
        ) is not None or store.customer_exists(self.engine, site_id, external_id)

    def stored_prior(self, site_id: str, outcome: Outcome) -> dict[str, Any] | None:
        """The stored record of ``outcome``'s key in the claim's shape, or None."""
        if outcome.dedup_key.startswith("customer:"):  # a deferred lead
            external_id = outcome.dedup_key.removeprefix("customer:")
            if not store.customer_exists(self.engine, site_id, external_id):
                return None
            with self.engine.connect() as conn:
                click = store.customer_click(conn, site_id, external_id)
            return {"fields": {"clickId": click}}
        return store.find_conversion(self.engine, site_id, outcome.dedup_key)

    def admit(self, site_id: str, outcome: Outcome, received_at: str) -> Decision:
        """Judge ``outcome`` and, when new or an update, append its events with its claims.

        Raises ``BacklogFull`` or ``redis.RedisError`` when the buffer cannot take them
        (nothing is claimed then).
        """
        bodies: list[Event] = []
        extra_claims: dict[str, str] = {}
        if outcome.customer is not None:
            bodies.append(Event(site_id, received_at, outcome.customer))
            if outcome.record:  # a deferred lead's own claim is the customer's
                customer = outcome.customer
                extra_claims[claim_key(site_id, f"customer:{customer.external_id}")] = _dumps(
                    {"fields": {"clickId": customer.click_id}, "firstReceivedAt": received_at}
                )
        if outcome.record:
            bodies.append(conversion_event(site_id, outcome, received_at))
        key = claim_key(site_id, outcome.dedup_key)
        with self.buffer.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    prior = json.loads(raw) if raw else self.stored_prior(site_id, outcome)
                    decision = judge(outcome, prior)
                    if decision.verdict not in ("new", "update"):
                        pipe.reset()
                        return decision
                    claims = {key: _dumps(claim_for(outcome, decision, received_at))}
                    claims.update(extra_claims)
                    # Each event carries its claims, so a worker that cannot store it can
                    # take them back and a retry of the request is admitted again.
                    events: list[str | bytes] = [encode(replace(e, claims=claims)) for e in bodies]
                    pipe.multi()
                    token = self.buffer.push_in(pipe, site_id, events, claims)
                    (result,) = pipe.execute()
                    break
                except WatchError:
                    continue  # another request claimed the key meanwhile: judge again
        self.buffer.settle(result, token)
        return decision

    def dry_run(self, site: Site, outcome: Outcome) -> dict[str, Any]:
        """What admitting ``outcome`` would do, and its attribution; nothing is written."""
        prior = self.remembered(site.id, outcome.dedup_key) or self.stored_prior(site.id, outcome)
        decision = judge(outcome, prior)
        result: dict[str, Any] = {
            "valid": True,
            "stored": False,
            "id": outcome.dedup_key,
            "wouldBe": decision.verdict,
        }
        if decision.differing:
            result["differing"] = decision.differing
        conversion = outcome.conversion
        if conversion is not None:
            with self.engine.connect() as conn:
                click = conversion.click_id
                if not click and outcome.click_from_customer:
                    click = store.customer_click(conn, site.id, outcome.click_from_customer)
                result["attribution"] = attribute(
                    conn,
                    site.id,
                    site.settings.attribution_window_days,
                    conversion.occurred_at,
                    visitor_id=conversion.visitor_id,
                    session_id=conversion.session_id,
                    click_id=click,
                )
        return result

    def stored_within(
        self, site_id: str, key: str, seconds: float = WAIT_SECONDS
    ) -> dict[str, Any] | None:
        """The stored conversion of ``key`` once the worker has it, None after ``seconds``."""
        deadline = time.monotonic() + seconds
        pause = WAIT_FIRST_POLL_S
        while True:
            found = store.conversion_by_key(self.engine, site_id, key)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(pause, left))
            pause = min(pause * 2, WAIT_MAX_POLL_S)
