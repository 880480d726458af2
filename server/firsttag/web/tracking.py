"""Server-side tracking endpoints (secret key): orders, leads, sales, conversions, batches.

Every endpoint runs the same path: validate → turn into an :class:`Outcome` → admit it
under its idempotency key (new, update, duplicate, stale or conflict) → append to the
Redis buffer together with its claim. ``?validate=1`` stops before anything is claimed or
queued and answers what would happen, with an attribution dry run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel
from redis.exceptions import RedisError

from firsttag import conversions, schemas, store
from firsttag.analytics.attribution import attribute
from firsttag.conversions import Decision, Outcome
from firsttag.events.buffer import BacklogFull, encode
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError, payload_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import json_body, secret_site

bp = Blueprint("tracking", __name__)

WAIT_SECONDS = 10.0
WAIT_FIRST_POLL_S = 0.01
WAIT_MAX_POLL_S = 0.5
BATCH_MAX_BYTES = 1024 * 1024


# type → (schema, outcome maker, whether clickId "" must name a known customer)
_TYPES: dict[str, tuple[type[BaseModel], Callable[[Any, str], Outcome], bool]] = {
    "order": (schemas.OrderWebhook, conversions.from_order, False),
    "lead": (schemas.TrackLead, conversions.from_lead, True),
    "sale": (schemas.TrackSale, conversions.from_sale, True),
    "event": (schemas.LinkEvent, conversions.from_link_event, False),
    "conversion": (schemas.ServerConversion, conversions.from_server_conversion, False),
}


def _validate_only() -> bool:
    return request.args.get("validate") in ("1", "true")


def _handle(kind: str, data: Any, site: Site, validate: bool) -> tuple[dict[str, Any], int]:
    model, make, needs_customer = _TYPES[kind]
    body = schemas.parse(model, data)
    received_at = store.utcnow()
    outcome = make(body, received_at)
    if (
        needs_customer
        and outcome.click_from_customer
        and not _customer_known(site, outcome.click_from_customer)
    ):
        raise APIError(
            404,
            "customer_not_found",
            "no customer with this customerExternalId: send its clickId, or a deferred lead first",
            [{"field": "customerExternalId", "message": "no such customer"}],
        )
    if validate:
        return _dry_run(site, outcome), 200
    decision = _admit(site, outcome, received_at)
    if decision.verdict == "conflict":
        raise APIError(
            409,
            "idempotency_conflict",
            f"{outcome.dedup_key} was first received at {decision.first_received_at} "
            f"with other values for: {', '.join(decision.differing)}",
            [
                {"field": f, "message": "differs from the first request with this key"}
                for f in decision.differing
            ],
        )
    answer: dict[str, Any] = {"success": True, "id": outcome.dedup_key}
    if decision.verdict in ("duplicate", "stale"):
        answer.update(duplicate=True, firstReceivedAt=decision.first_received_at)
        if decision.verdict == "stale":
            answer.update(stale=True)  # older than the state already recorded: ignored
        return answer, 200
    answer.update(duplicate=False, updated=decision.verdict == "update")
    if outcome.customer:
        answer["customer"] = outcome.customer
    if outcome.wait and outcome.record:
        with services().waits.hold(site.id) as free:
            # No free slot: answer at once, as a wait that ran out of time would.
            stored = _wait_for(site, outcome.dedup_key) if free else None
        if stored is None:
            answer["pending"] = True  # durably queued; the worker has not caught up yet
            return answer, 202
        answer["conversion"] = stored
    return answer, 200


def _claim_key(site: Site, key: str) -> str:
    return f"{site.id}:{key}"


def _customer_known(site: Site, external_id: str) -> bool:
    s = services()
    return s.buffer.claim(
        _claim_key(site, f"customer:{external_id}")
    ) is not None or store.customer_exists(s.engine, site.id, external_id)


def _stored_prior(site: Site, outcome: Outcome) -> dict[str, Any] | None:
    engine = services().engine
    if outcome.dedup_key.startswith("customer:"):  # a deferred lead
        external_id = outcome.dedup_key.removeprefix("customer:")
        if not store.customer_exists(engine, site.id, external_id):
            return None
        with engine.connect() as conn:
            return {"fields": {"clickId": store.customer_click(conn, site.id, external_id)}}
    return store.find_conversion(engine, site.id, outcome.dedup_key)


def _admit(site: Site, outcome: Outcome, received_at: str) -> Decision:
    events = []
    claims = {}
    if outcome.customer:
        events.append(encode("customer", site.id, received_at, outcome.customer))
        if outcome.record:  # a deferred lead's own claim is the customer's
            customer_claim = {
                "fields": {"clickId": outcome.customer["clickId"]},
                "firstReceivedAt": received_at,
            }
            claims[_claim_key(site, f"customer:{outcome.customer['externalId']}")] = json.dumps(
                customer_claim
            )
    if outcome.record:
        events.append(conversion_event(site.id, outcome, received_at))

    def decide(prior: dict[str, Any] | None) -> tuple[Decision, dict[str, Any] | None]:
        if prior is None:
            prior = _stored_prior(site, outcome)
        decision = conversions.judge(outcome, prior)
        if decision.verdict in ("new", "update"):
            return decision, conversions.claim_for(outcome, decision, received_at)
        return decision, None

    return services().buffer.push_claimed(
        site.id, _claim_key(site, outcome.dedup_key), decide, events, claims
    )


def conversion_event(site_id: str, outcome: Outcome, received_at: str) -> str:
    """The buffer event that stores ``outcome``."""
    row = dict(
        outcome.row, fingerprint=outcome.fields, clickFromCustomer=outcome.click_from_customer
    )
    return encode("conversion", site_id, received_at, row)


def _dry_run(site: Site, outcome: Outcome) -> dict[str, Any]:
    s = services()
    prior = s.buffer.claim(_claim_key(site, outcome.dedup_key)) or _stored_prior(site, outcome)
    decision = conversions.judge(outcome, prior)
    result: dict[str, Any] = {
        "valid": True,
        "stored": False,
        "id": outcome.dedup_key,
        "wouldBe": decision.verdict,
    }
    if decision.differing:
        result["differing"] = decision.differing
    if outcome.record:
        row = outcome.row
        with s.engine.connect() as conn:
            click = row.get("clickId")
            if not click and outcome.click_from_customer:
                click = store.customer_click(conn, site.id, outcome.click_from_customer)
            result["attribution"] = attribute(
                conn,
                site.id,
                site.settings.attribution_window_days,
                row["occurredAt"],
                visitor_id=row.get("visitorId"),
                session_id=row.get("sessionId"),
                click_id=click,
            )
    return result


def _wait_for(site: Site, key: str) -> dict[str, Any] | None:
    # The worker usually stores within a few ms: poll soon, then back off, so a slow
    # worker costs a couple of dozen queries per wait, not two hundred.
    engine = services().engine
    deadline = time.monotonic() + WAIT_SECONDS
    pause = WAIT_FIRST_POLL_S
    while True:
        found = store.conversion_by_key(engine, site.id, key)
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, WAIT_MAX_POLL_S)


def _endpoint(kind: str, decimals: bool = False) -> Callable[[], Any]:
    def view() -> Any:
        site = secret_site()
        charge_site("server", site)
        return _handle(kind, json_body(decimals=decimals), site, _validate_only())

    view.__name__ = f"track_{kind}"
    view.__doc__ = f"Accept a {kind} reported by a back end (secret key)."
    return view


bp.add_url_rule("/api/webhooks/orders", view_func=_endpoint("order"), methods=["POST"])
bp.add_url_rule("/api/v1/track/lead", view_func=_endpoint("lead"), methods=["POST"])
bp.add_url_rule("/api/v1/track/sale", view_func=_endpoint("sale"), methods=["POST"])
bp.add_url_rule("/api/v1/events", view_func=_endpoint("event", decimals=True), methods=["POST"])
bp.add_url_rule("/api/v1/conversions", view_func=_endpoint("conversion"), methods=["POST"])


@bp.post("/api/v1/batch")
def batch() -> Any:
    """Up to 500 events, each accepted, duplicate or rejected on its own (no all-or-nothing)."""
    site = secret_site()
    request.max_content_length = BATCH_MAX_BYTES
    body = schemas.parse(schemas.Batch, json_body(decimals=True))
    charge_site("server", site, cost=len(body.events))
    validate = _validate_only()
    results = []
    for index, item in enumerate(body.events):
        result: dict[str, Any] = {"index": index}
        try:
            answer, status = _handle(item.type, item.data, site, validate)
        except (APIError, schemas.InvalidPayload) as exc:
            err = payload_error(exc) if isinstance(exc, schemas.InvalidPayload) else exc
            result.update(status="rejected", httpStatus=err.status, error=err.body()["error"])
        except BacklogFull:
            result.update(
                status="retry",
                httpStatus=429,
                error={"code": "backlog_full", "message": "retry later"},
            )
        except RedisError:
            result.update(
                status="retry",
                httpStatus=503,
                error={"code": "queue_unavailable", "message": "retry later"},
            )
        else:
            verdict = (
                "validated"
                if validate
                else ("duplicate" if answer.get("duplicate") else "accepted")
            )
            result.update(status=verdict, httpStatus=status, result=answer)
        results.append(result)
    counts = {
        k: sum(r["status"] == k for r in results)
        for k in ("accepted", "duplicate", "rejected", "retry", "validated")
    }
    return {"results": results, "counts": {k: v for k, v in counts.items() if v}}
