"""Bounds on ``mode: "wait"`` requests, which hold a web thread until the worker stores.

A web process has a few threads; without a bound, a dozen waiting requests would hold all
of them and stall every site's beacons. A request that finds no free slot is not made to
wait at all: it is answered as a wait that ran out of time (``pending``; 202, or 200 on
Dub's routes), which is true, since its event is already durably queued.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WaitSlots:
    """At most ``total`` waits in this process, and at most ``per_site`` for one site."""

    def __init__(self, total: int, per_site: int) -> None:
        self._total = total
        self._per_site = per_site
        self._held = 0
        self._by_site: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, site_id: str) -> Iterator[bool]:
        """Take a slot for ``site_id`` for the block; yields False when none is free."""
        with self._lock:
            free = self._held < self._total and self._by_site.get(site_id, 0) < self._per_site
            if free:
                self._held += 1
                self._by_site[site_id] = self._by_site.get(site_id, 0) + 1
        try:
            yield free
        finally:
            if free:
                with self._lock:
                    self._held -= 1
                    left = self._by_site[site_id] - 1
                    if left:
                        self._by_site[site_id] = left
                    else:
                        del self._by_site[site_id]
