"""Dub's customer routes: ``GET /customers``, ``GET``/``PATCH``/``DELETE /customers/{id}``.

Under ``/api/v1`` and at the root, so that a bare host works as a Dub SDK's server URL;
secret key only. The blueprint's name starts with ``dub`` so that its errors answer in
Dub's error envelope. The rules are in :mod:`firsttag.customers`; the erasure is a queued
event (see ``docs/privacy.md``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from firsttag import customers, schemas, store
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.errors import APIError, field_error
from firsttag.web.ratelimit import charge_site
from firsttag.web.requests import int_arg, json_body, secret_site

bp = Blueprint("dub_customers", __name__)

MAX_PAGE_SIZE = 100
#: How long DELETE waits for the worker to erase, so a read right after sees it gone;
#: well under the HTTP clients' usual 5 s timeout (httpx's, which Dub's Python SDK uses).
ERASURE_WAIT_S = 2.0
#: Filters on data firsttag does not keep: no firsttag customer has a country, link,
#: program or partner, so a list filtered on one is empty, as Dub's would be.
_NOTHING_MATCHES = ("country", "linkId", "programId", "partnerId")


def _found(site: Site, dub_id: str) -> dict[str, Any]:
    row = customers.find(services().engine, site.id, dub_id)
    if row is None:
        raise APIError(
            404,
            "customer_not_found",
            f"no customer {dub_id!r}: use its cus_… ID or ext_<externalId>",
            [{"field": "id", "message": "no such customer"}],
        )
    return row


@bp.get("/customers")
def list_view() -> Any:
    """Dub's ``customers.list``: filters, ``startingAfter``/``endingBefore`` or ``page``."""
    site = secret_site()
    charge_site("reads", site)
    args = request.args
    sort_by = args.get("sortBy") or "createdAt"
    if sort_by != "createdAt":
        raise field_error("sortBy", "firsttag sorts customers by createdAt only")
    sort_order = args.get("sortOrder") or "desc"
    if sort_order not in ("asc", "desc"):
        raise field_error("sortOrder", "must be asc or desc")
    if args.get("startingAfter") and args.get("endingBefore"):
        raise field_error("endingBefore", "startingAfter and endingBefore exclude each other")
    query = customers.ListQuery(
        email=args.get("email") or None,
        external_id=args.get("externalId") or None,
        search=args.get("search") or None,
        matches_nothing=any(args.get(name) for name in _NOTHING_MATCHES),
        ascending=sort_order == "asc",
        starting_after=args.get("startingAfter") or None,
        ending_before=args.get("endingBefore") or None,
        page=int_arg("page", None, 1, 1_000_000),
        page_size=int_arg("pageSize", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE) or MAX_PAGE_SIZE,
    )
    return customers.list_customers(services().engine, site.id, query)


@bp.get("/customers/<id>")
def get_view(id: str) -> Any:  # noqa: A002 (Dub's name)
    """Dub's ``customers.get``: by ``cus_…`` ID or ``ext_<externalId>``."""
    site = secret_site()
    charge_site("reads", site)
    return customers.dub_customer(_found(site, id))


@bp.patch("/customers/<id>")
def update_view(id: str) -> Any:  # noqa: A002 (Dub's name)
    """Dub's ``customers.update``: name, email, avatar, written at once in one transaction."""
    site = secret_site()
    charge_site("server", site)
    body = schemas.parse(schemas.CustomerUpdate, json_body())
    row = _found(site, id)
    if body.externalId is not None and body.externalId != row["external_id"]:
        raise field_error(
            "externalId", "firsttag files conversions under the externalId; it cannot change"
        )
    changes = {
        k: getattr(body, k) for k in ("name", "email", "avatar") if k in body.model_fields_set
    }
    updated = customers.update(services().engine, site.id, row["external_id"], changes)
    if updated is None:  # erased between the lookup and the update
        raise APIError(404, "customer_not_found", f"no customer {id!r}")
    return customers.dub_customer(updated)


@bp.delete("/customers/<id>")
def delete_view(id: str) -> Any:  # noqa: A002 (Dub's name)
    """Dub's ``customers.delete``: erase the person (``docs/privacy.md``).

    The erasure is queued behind every event received before it, so none of them brings
    the person back; the answer waits (bounded) until the worker has done it.
    """
    site = secret_site()
    charge_site("server", site)
    row = _found(site, id)
    s = services()
    received_at = store.utcnow()
    claims = customers.claim_keys(s.engine, site.id, row["external_id"])
    s.buffer.push(customers.erasure_event(site.id, row["external_id"], received_at))
    s.redis.delete(*claims)
    with s.waits.hold(site.id) as free:
        if free:
            customers.erased_within(
                s.engine, site.id, row["public_id"], received_at, ERASURE_WAIT_S
            )
    # Queued durably either way: the worker erases the person even if it is slow now.
    return {"id": row["public_id"]}
