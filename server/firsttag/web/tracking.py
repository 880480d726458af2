"""Server-side tracking endpoints (secret key): orders, leads, sales, conversions, batches.

Every endpoint runs the same path: authenticate, validate, turn into an :class:`Outcome`
(:mod:`firsttag.conversions`), hand it to :mod:`firsttag.admission` (new, update,
duplicate, stale or conflict; appended to the buffer with its claim) and answer.
``?validate=1`` asks admission for a dry run instead: nothing is claimed or queued.

Dub's two routes, ``/track/lead`` and ``/track/sale`` (under ``/api/v1`` and at the root,
so that a bare host works as an SDK's ``serverURL``), live in their own blueprint,
``dub_track``: they answer Dub's bodies (:mod:`firsttag.dub`), always with 200 on success
as Dub's SDKs expect, and :mod:`firsttag.web.errors` answers their errors in Dub's envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, request
from redis.exceptions import RedisError

from firsttag import dub, schemas, store
from firsttag.admission import Admission
from firsttag.conversions import Outcome
from firsttag.endpoints import SERVER_KINDS, Batch, Endpoint, server_kind
from firsttag.events.buffer import BacklogFull
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError, payload_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import json_body, secret_site
from firsttag.wire import data_of

bp = Blueprint("tracking", __name__)
#: Dub's routes. The name starts with "dub": errors.py answers them in Dub's envelope.
dub_bp = Blueprint("dub_track", __name__)

#: The kinds Dub's SDKs call, routed through ``dub_bp`` instead of ``bp``.
DUB_KINDS = ("lead", "sale")

BATCH_MAX_BYTES = 1024 * 1024


def _validate_only() -> bool:
    return request.args.get("validate") in ("1", "true")


@dataclass
class _Admitted:
    """firsttag's answer to one event, with what it was made from (for Dub's answers)."""

    answer: dict[str, Any]
    status: int
    body: Any
    outcome: Outcome


def _handle(kind: str, data: Any, site: Site, validate: bool) -> tuple[dict[str, Any], int]:
    done = _admit(kind, data, site, validate)
    return done.answer, done.status


def _admit(kind: str, data: Any, site: Site, validate: bool) -> _Admitted:
    endpoint = server_kind(kind)
    assert endpoint.maker is not None  # every server kind has one
    body = schemas.parse(endpoint.payload, data)
    received_at = store.utcnow()
    outcome = endpoint.maker(body, received_at)
    s = services()
    admission = Admission(s.buffer, s.engine)
    if (
        endpoint.customer_must_exist
        and outcome.click_from_customer
        and not admission.customer_known(site.id, outcome.click_from_customer)
    ):
        raise APIError(
            404,
            "customer_not_found",
            "no customer with this customerExternalId: send its clickId, or a deferred lead first",
            [{"field": "customerExternalId", "message": "no such customer"}],
        )
    if validate:
        return _Admitted(admission.dry_run(site, outcome), 200, body, outcome)
    decision = admission.admit(site.id, outcome, received_at)
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
        return _Admitted(answer, 200, body, outcome)
    answer.update(duplicate=False, updated=decision.verdict == "update")
    if outcome.customer is not None:
        answer["customer"] = data_of(outcome.customer)
    if outcome.wait and outcome.record:
        with s.waits.hold(site.id) as free:
            # No free slot: answer at once, as a wait that ran out of time would.
            stored = admission.stored_within(site.id, outcome.dedup_key) if free else None
        if stored is None:
            answer["pending"] = True  # durably queued; the worker has not caught up yet
            return _Admitted(answer, 202, body, outcome)
        answer["conversion"] = stored
    return _Admitted(answer, 200, body, outcome)


def _endpoint(endpoint: Endpoint) -> Callable[[], Any]:
    def view() -> Any:
        site = secret_site()
        charge_site("server", site)
        body = json_body(decimals=endpoint.decimals)
        return _handle(endpoint.kind, body, site, _validate_only())

    view.__name__ = f"track_{endpoint.kind}"
    view.__doc__ = f"Accept a {endpoint.kind} reported by a back end (secret key)."
    return view


def _profile(site_id: str, outcome: Outcome, external_id: str) -> tuple[dub.Profile, str | None]:
    """The customer as Dub answers it, and its click: stored, else the one being created."""
    row = store.customer_row(services().engine, site_id, external_id)
    if row is not None:
        profile = dub.Profile(external_id, row["name"], row["email"], row["avatar"])
        return profile, row["click_id"]
    created = outcome.customer
    if created is None:  # a sale creates no customer; it was claimed, not yet stored
        return dub.Profile(external_id), None
    return dub.Profile(external_id, created.name, created.email, created.avatar), None


def _claimed_click(site_id: str, external_id: str) -> str | None:
    s = services()
    claim = Admission(s.buffer, s.engine).remembered(site_id, f"customer:{external_id}")
    return ((claim or {}).get("fields") or {}).get("clickId")


def _dub_endpoint(endpoint: Endpoint) -> Callable[[], Any]:
    def view() -> Any:
        site = secret_site()
        charge_site("server", site)
        validate = _validate_only()
        done = _admit(endpoint.kind, json_body(decimals=endpoint.decimals), site, validate)
        if validate:
            return done.answer, done.status
        # Dub's `customer` replaces ours; a wait that ran out of time is still a 200 (the
        # SDKs treat any other 2xx as an error) and says `pending: true`.
        ours = {k: v for k, v in done.answer.items() if k != "customer"}
        body = done.body
        profile, stored_click = _profile(site.id, done.outcome, body.customerExternalId)
        if endpoint.kind == "sale":
            return dub.sale_answer(site.id, body, profile, ours), 200
        click = body.clickId or stored_click or _claimed_click(site.id, body.customerExternalId)
        return dub.lead_answer(click or "", profile, ours), 200

    view.__name__ = f"track_{endpoint.kind}"
    view.__doc__ = f"Accept a Dub {endpoint.kind} and answer as Dub does (secret key)."
    return view


# One URL rule per server-side kind of the registry: a new kind needs no line here.
for _kind in SERVER_KINDS:
    if _kind.kind in DUB_KINDS:
        dub_bp.add_url_rule(_kind.path, view_func=_dub_endpoint(_kind), methods=["POST"])
        # The same route at the root: a bare host works as the SDKs' serverURL too.
        root_path = _kind.path.removeprefix("/api/v1")
        dub_bp.add_url_rule(
            root_path, f"root_track_{_kind.kind}", _dub_endpoint(_kind), methods=["POST"]
        )
    else:
        bp.add_url_rule(_kind.path, view_func=_endpoint(_kind), methods=["POST"])


@bp.post("/api/v1/batch")
def batch() -> Any:
    """Up to 500 events, each accepted, duplicate or rejected on its own (no all-or-nothing)."""
    site = secret_site()
    request.max_content_length = BATCH_MAX_BYTES
    body = schemas.parse(Batch, json_body(decimals=True))
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
