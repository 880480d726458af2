"""The services one app instance shares across requests, and how a request finds them.

Blueprints import :func:`services` from here, not from :mod:`firsttag.web.app`: the app
factory imports every blueprint, so a lookup living beside it would make each blueprint
import its own importer.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis
from sqlalchemy import Engine

from firsttag.config import Config
from firsttag.events.buffer import EventBuffer
from firsttag.identity import SessionKeys
from firsttag.limiter import RateLimiter
from firsttag.sites import SiteDirectory
from firsttag.tag.render import TagCache
from firsttag.web.waits import WaitSlots

#: The key of :class:`Services` in ``app.extensions``.
EXTENSION = "firsttag"


@dataclass
class Services:
    """The connection pools and helpers one app instance shares across requests."""

    config: Config
    engine: Engine
    redis: Redis
    buffer: EventBuffer
    sites: SiteDirectory
    session_keys: SessionKeys
    tags: TagCache
    limiter: RateLimiter
    waits: WaitSlots


def services() -> Services:
    """The :class:`Services` of the current app (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
