"""Public customer IDs: ``cus_`` and a stable digest of the site and the external ID.

Dub's API names a customer by an ID of its own (``cus_…``) beside the site's external ID.
firsttag keys customers by (site, external ID), so the public ID is derived, not drawn at
random: the same customer has the same ID in every process, after a replay, and in a
response written before the worker has stored the customer.
"""

from __future__ import annotations

import hashlib

PREFIX = "cus_"


def customer_id(site_id: str, external_id: str) -> str:
    """The ``cus_…`` ID the Dub-compatible API shows for ``external_id`` of ``site_id``."""
    digest = hashlib.sha256(f"{site_id}\0{external_id}".encode()).hexdigest()
    return PREFIX + digest[:24]
