"""A customer's journey on one page: touches, leads, sales and refunds, oldest first."""

from __future__ import annotations

from typing import Any

from flask import render_template
from werkzeug.exceptions import NotFound

from firsttag.analytics import explore
from firsttag.customer_ids import customer_id
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp


@bp.get("/sites/<site_id>/customers/<path:external_id>", endpoint="customer")
@require_site("viewer")
def customer_page(site: Site, external_id: str) -> Any:
    """The customer with this external ID (as the site's back end names them)."""
    journey = explore.customer(services().engine, site.id, external_id)
    if journey is None:
        raise NotFound("There is no such customer on this site.")
    return render_template(
        "dashboard/customer.html",
        site=site,
        j=journey,
        public_id=customer_id(site.id, external_id),
    )
