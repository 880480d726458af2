"""Sites and their keys.

A site has two keys. The publishable key (``pk_…``) may appear in pages and can only add
browser signals. The secret key (``sk_…``) is for servers: it is returned once by
:func:`create_site` and only its SHA-256 digest is stored. A digest of a random 192-bit
key needs no slow password hash: there is nothing to guess from.

Keys can be replaced: :func:`rotate_secret_key` makes a new secret key and lets the old one
work on for a grace period the owner picks (then never again; :func:`end_secret_grace`
ends it early); :func:`rotate_site_key` replaces the publishable key at once. Running
servers see a rotation within the :class:`SiteDirectory` TTL (10 s); the process that
rotates calls :meth:`SiteDirectory.forget` and sees it at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from sqlalchemy import Engine, insert, select, update

from firsttag import money, store

_GLOBAL_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}$")
_TAG_PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,200}\.js$")
_FIRST_PARTY_PATH = re.compile(r"^(/[A-Za-z0-9_-]{1,64}){1,4}$")
_RESERVED = frozenset(
    [
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "new",
        "null",
        "return",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "let",
        "static",
        "window",
        "document",
        "location",
        "navigator",
        "undefined",
        "NaN",
        "Infinity",
        "eval",
        "arguments",
    ]
)

#: The largest per-site rate limit a setting may ask for (requests per minute).
MAX_RATE_PER_MINUTE = 10_000_000

ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "refunded", "cancelled")

#: The largest value one browser conversion may report, in minor units: 100,000.00 of a
#: two-decimal currency. Anyone can send a beacon, so one beacon must not be able to report
#: a fortune; a shop selling dearer things raises it per site.
DEFAULT_MAX_BROWSER_VALUE = 10_000_000


@dataclass(frozen=True)
class Settings:
    """Per-site settings, stored as JSON in ``sites.settings``."""

    #: Touches older than this before a conversion do not get credit (Selektable: 7 days).
    attribution_window_days: int = 7
    #: Order statuses that count as a conversion; refunded and cancelled never add revenue.
    counting_statuses: tuple[str, ...] = ("completed",)
    #: The tag's global (``window.firsttag``): a site may pick a name ad blockers ignore.
    global_name: str = "firsttag"
    #: Another path the tag is served at besides /t/<id>.js, e.g. /assets/app-3f9a.js.
    tag_path: str | None = None
    #: Consent mode: nothing is written to storage or cookies before firsttag.consent(true).
    consent_required: bool = False
    #: First-party mode: the path of the site's own origins that proxies to this server,
    #: e.g. /ft. The tag then talks to it, and session registrations set the visitor and
    #: click IDs as HttpOnly cookies of the site (web/firstparty.py). None: off.
    first_party_path: str | None = None
    #: Single-page apps: the tag calls page() on history.pushState and popstate.
    track_history: bool = False
    #: Count values reported by browsers (firsttag.convert) as revenue. Off by default: the
    #: publishable key is public, so a browser value is a claim, not money a back end confirmed.
    count_browser_revenue: bool = False
    #: Largest ``value`` a browser conversion may report (minor units); above it: 400.
    max_browser_value: int = DEFAULT_MAX_BROWSER_VALUE
    #: Browser requests per minute for the whole site; None: FIRSTTAG_RATE_BROWSER.
    browser_rate_per_minute: int | None = None
    #: Server events per minute (secret key, a batch counts its items); None: FIRSTTAG_RATE_SERVER.
    server_rate_per_minute: int | None = None
    #: Analytics and conversion reads per minute; None: FIRSTTAG_RATE_READS.
    reads_rate_per_minute: int | None = None
    #: The IANA time zone the dashboard's days (today, 7 days, this month) are counted in.
    time_zone: str = "UTC"

    @classmethod
    def from_json(cls, raw: str | None) -> Settings:
        """Settings from their stored JSON; absent keys take their defaults."""
        data = json.loads(raw or "{}")
        if "counting_statuses" in data:
            data["counting_statuses"] = tuple(data["counting_statuses"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def validated(self) -> Settings:
        """Self, or ValueError naming the bad setting."""
        if not 1 <= self.attribution_window_days <= 365:
            raise ValueError("attribution window must be 1 to 365 days")
        bad = [s for s in self.counting_statuses if s not in ORDER_STATUSES]
        if bad or not self.counting_statuses:
            raise ValueError(f"counting statuses must be some of {', '.join(ORDER_STATUSES)}")
        if not _GLOBAL_NAME.match(self.global_name) or self.global_name in _RESERVED:
            raise ValueError("global name must be a JavaScript identifier, e.g. shopMetrics")
        if self.tag_path is not None and (
            not _TAG_PATH.match(self.tag_path) or self.tag_path.startswith(("/api/", "/t/"))
        ):
            raise ValueError("tag path must look like /assets/app.js (not under /api/ or /t/)")
        if self.first_party_path is not None and not _FIRST_PARTY_PATH.match(self.first_party_path):
            raise ValueError("first-party path must look like /ft (no trailing slash)")
        if not 0 <= self.max_browser_value <= money.MAX_MINOR_UNITS:
            raise ValueError(f"max browser value must be 0 to {money.MAX_MINOR_UNITS} minor units")
        for name in ("browser", "server", "reads"):
            rate = getattr(self, f"{name}_rate_per_minute")
            if rate is not None and not 1 <= rate <= MAX_RATE_PER_MINUTE:
                raise ValueError(f"{name} rate must be 1 to {MAX_RATE_PER_MINUTE:,} per minute")
        if self.time_zone not in time_zones():
            raise ValueError("time zone must be an IANA name such as Europe/Paris or UTC")
        return self


@cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names a site may pick (the system's database, else ``tzdata``)."""
    return frozenset(available_timezones())


def site_settings(conn: Any, site_id: str) -> Settings:
    """The :class:`Settings` of a site read on ``conn`` (defaults when it has none).

    Here rather than in :mod:`firsttag.store`, which only knows the column: the store
    module stays below this one and never imports it back.
    """
    raw = conn.execute(select(store.sites.c.settings).where(store.sites.c.id == site_id)).scalar()
    return Settings.from_json(raw)


def site_origins(conn: Any, site_id: str) -> tuple[str, ...]:
    """The origins of a site read on ``conn`` (empty for an unknown site)."""
    raw = conn.execute(select(store.sites.c.origins).where(store.sites.c.id == site_id)).scalar()
    return tuple(json.loads(raw)) if raw else ()


@dataclass(frozen=True)
class Site:
    """One customer website as the request path sees it (no secret material)."""

    id: str
    name: str
    site_key: str
    origins: tuple[str, ...]
    created_at: str
    settings: Settings = field(default_factory=Settings)

    def allows_origin(self, origin: str | None) -> bool:
        """True when a browser request from ``origin`` may act for this site."""
        return origin is not None and origin.lower() in self.origins

    def public_dict(self) -> dict[str, Any]:
        """The site as ``firsttag sites list`` prints it."""
        return {
            "id": self.id,
            "name": self.name,
            "siteKey": self.site_key,
            "origins": list(self.origins),
            "settings": {
                "attributionWindowDays": self.settings.attribution_window_days,
                "countingStatuses": list(self.settings.counting_statuses),
                "globalName": self.settings.global_name,
                "tagPath": self.settings.tag_path,
                "consentRequired": self.settings.consent_required,
                "firstPartyPath": self.settings.first_party_path,
                "trackHistory": self.settings.track_history,
                "countBrowserRevenue": self.settings.count_browser_revenue,
                "maxBrowserValue": self.settings.max_browser_value,
                "browserRatePerMinute": self.settings.browser_rate_per_minute,
                "serverRatePerMinute": self.settings.server_rate_per_minute,
                "readsRatePerMinute": self.settings.reads_rate_per_minute,
                "timeZone": self.settings.time_zone,
            },
            "createdAt": self.created_at,
        }


def normalise_origin(raw: str) -> str:
    """Return ``raw`` as a browser ``Origin`` (``scheme://host[:port]``); raise ValueError."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"origin must look like https://shop.example, got {raw!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"origin must not have a path, query or credentials: {raw!r}")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def hash_secret(secret_key: str) -> str:
    """The stored form of a secret key."""
    return hashlib.sha256(secret_key.encode()).hexdigest()


def create_site(
    engine: Engine, name: str, origins: list[str], settings: Settings | None = None
) -> tuple[Site, str]:
    """Create a site; return it with its secret key, which is never retrievable again."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("name must be 1 to 200 characters")
    if not origins:
        raise ValueError("at least one --origin is required")
    clean = tuple(dict.fromkeys(normalise_origin(o) for o in origins))
    site = Site(
        id="st_" + secrets.token_hex(6),
        name=name,
        site_key="pk_" + secrets.token_hex(12),
        origins=clean,
        created_at=store.utcnow(),
        settings=(settings or Settings()).validated(),
    )
    secret_key = "sk_" + secrets.token_hex(24)
    with engine.begin() as conn:
        conn.execute(
            insert(store.sites).values(
                id=site.id,
                name=site.name,
                site_key=site.site_key,
                secret_hash=hash_secret(secret_key),
                origins=json.dumps(list(site.origins)),
                settings=json.dumps(asdict(site.settings)),
                created_at=site.created_at,
            )
        )
    return site, secret_key


def update_settings(
    engine: Engine, site_id: str, origins: list[str] | None = None, **changes: Any
) -> Site:
    """Change some settings of a site (and its origins, if given); returns the site as stored.

    All or nothing: a bad setting or origin raises ValueError naming it and changes nothing.
    """
    values: dict[str, Any] = {}
    if origins is not None:
        clean = tuple(dict.fromkeys(normalise_origin(o) for o in origins if o.strip()))
        if not clean:
            raise ValueError("at least one origin is required")
        values["origins"] = json.dumps(list(clean))
    with engine.begin() as conn:
        row = (
            conn.execute(select(store.sites).where(store.sites.c.id == site_id)).mappings().first()
        )
        if row is None:
            raise ValueError(f"no site {site_id}")
        current = asdict(Settings.from_json(row["settings"]))
        current.update({k: v for k, v in changes.items() if v is not None})
        if current.get("tag_path") == "":  # an empty tag path removes it
            current["tag_path"] = None
        if current.get("first_party_path") == "":  # `--first-party-path ''`: off
            current["first_party_path"] = None
        if "counting_statuses" in current:
            current["counting_statuses"] = tuple(current["counting_statuses"])
        new = Settings(**current).validated()
        conn.execute(
            update(store.sites)
            .where(store.sites.c.id == site_id)
            .values(settings=json.dumps(asdict(new)), **values)
        )
        row = conn.execute(select(store.sites).where(store.sites.c.id == site_id)).mappings().one()
    return _site(row)


def get_site(engine: Engine, site_id: str) -> Site | None:
    """The site as stored now (no cache: pages that just changed it show the change)."""
    if not _could_be_stored(site_id):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(store.sites).where(store.sites.c.id == site_id)).mappings()
        found = row.first()
    return _site(found) if found else None


def _could_be_stored(value: str) -> bool:
    # A URL or header can carry what no stored ID or key holds: PostgreSQL refuses a NUL in
    # a query parameter outright (an error, not "no row"), and no key is this long.
    return "\x00" not in value and len(value) <= 200


#: The longest grace period an old secret key may be given.
MAX_SECRET_GRACE = timedelta(days=30)


def rotate_secret_key(engine: Engine, site_id: str, grace: timedelta) -> str:
    """Give a site a new secret key and return it (shown once, stored hashed).

    The old key keeps working for ``grace`` (0: it stops now), then never again. Only
    one old key is kept: rotating again during a grace period ends the older key at once.
    """
    if not timedelta(0) <= grace <= MAX_SECRET_GRACE:
        raise ValueError("grace period must be 0 to 30 days")
    secret_key = "sk_" + secrets.token_hex(24)
    expires = store.format_time(datetime.now(UTC) + grace)
    t = store.sites
    with engine.begin() as conn:
        old = conn.execute(select(t.c.secret_hash).where(t.c.id == site_id)).scalar()
        if old is None:
            raise ValueError(f"no site {site_id}")
        conn.execute(
            update(t)
            .where(t.c.id == site_id)
            .values(
                secret_hash=hash_secret(secret_key),
                previous_secret_hash=old if grace else None,
                previous_secret_expires_at=expires if grace else None,
            )
        )
    return secret_key


def end_secret_grace(engine: Engine, site_id: str) -> None:
    """Stop the old secret key of a site now, before its grace period would have ended."""
    t = store.sites
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == site_id)
            .values(previous_secret_hash=None, previous_secret_expires_at=None)
        )


def secret_grace_ends(engine: Engine, site_id: str) -> str | None:
    """When the old secret key of a site stops working (a store timestamp), if it still does."""
    t = store.sites
    with engine.connect() as conn:
        ends = conn.execute(
            select(t.c.previous_secret_expires_at).where(t.c.id == site_id)
        ).scalar()
    return ends if ends and ends > store.utcnow() else None


def rotate_site_key(engine: Engine, site_id: str) -> Site:
    """Give a site a new publishable key; the old one stops at once (it is public anyway)."""
    with engine.begin() as conn:
        done = conn.execute(
            update(store.sites)
            .where(store.sites.c.id == site_id)
            .values(site_key="pk_" + secrets.token_hex(12))
        ).rowcount
    if not done:
        raise ValueError(f"no site {site_id}")
    found = get_site(engine, site_id)
    assert found is not None
    return found


def list_sites(engine: Engine) -> list[Site]:
    """All sites, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(store.sites).order_by(store.sites.c.created_at))
        return [_site(r) for r in rows.mappings()]


def _site(row: Any) -> Site:
    return Site(
        id=row["id"],
        name=row["name"],
        site_key=row["site_key"],
        origins=tuple(json.loads(row["origins"])),
        created_at=row["created_at"],
        settings=Settings.from_json(row["settings"]),
    )


#: A miss rebuilds the site index at most this often (misses are free to send).
MISS_REFRESH_S = 1.0


@dataclass(frozen=True)
class _Secrets:
    """What the secret-key check needs of a site row: the digests and the grace period."""

    current: str
    previous: str | None
    previous_until: str | None

    def accepts(self, digest: str) -> bool:
        """True when ``digest`` is the current key's, or the old key's within its grace."""
        if hmac.compare_digest(self.current, digest):
            return True
        return (
            self.previous is not None
            and self.previous_until is not None
            and hmac.compare_digest(self.previous, digest)
            and store.utcnow() < self.previous_until
        )


@dataclass(frozen=True)
class _SiteIndex:
    built_at: float
    origins: frozenset[str] = frozenset()
    tag_paths: dict[str, str] = field(default_factory=dict)


class SiteDirectory:
    """Looks sites up by id, publishable key or secret key, with a short-lived cache.

    Every browser request needs its site, so found sites are cached for ``ttl`` seconds;
    misses by id or key are not cached (an indexed one-row query), so a site created a
    moment ago is found at once. Origins and tag paths come from a small index of all
    sites (see :meth:`_index`).
    """

    def __init__(self, engine: Engine, ttl: float = 10.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Site, _Secrets]] = {}
        self._site_index = _SiteIndex(built_at=-MISS_REFRESH_S - ttl)
        self._lock = threading.Lock()

    def by_id(self, site_id: str) -> Site | None:
        """The site with this id."""
        found = self._lookup("id", site_id)
        return found[0] if found else None

    def by_site_key(self, site_key: str) -> Site | None:
        """The site whose publishable key this is."""
        found = self._lookup("site_key", site_key)
        return found[0] if found else None

    def by_secret_key(self, secret_key: str) -> Site | None:
        """The site whose secret key this is, compared in constant time.

        Also a replaced key during its grace period (see :func:`rotate_secret_key`); the
        end of a grace period is checked on every call, cached or not.
        """
        digest = hash_secret(secret_key)
        for column in ("secret_hash", "previous_secret_hash"):
            found = self._lookup(column, digest)
            if found and found[1].accepts(digest):
                return found[0]
        return None

    def forget(self, site_id: str) -> None:
        """Drop every cached lookup of a site, so a change made here is seen at once."""
        with self._lock:
            for key in [k for k, v in self._cache.items() if v[1].id == site_id]:
                del self._cache[key]

    def by_tag_path(self, path: str) -> Site | None:
        """The site whose custom tag path this is."""
        site_id = self._index(lambda index: path in index.tag_paths).tag_paths.get(path)
        return self.by_id(site_id) if site_id else None

    def knows_origin(self, origin: str) -> bool:
        """True when any site allows ``origin`` (CORS preflights carry no key to tell which)."""
        origin = origin.lower()
        return origin in self._index(lambda index: origin in index.origins).origins

    def _index(self, found: Callable[[_SiteIndex], bool]) -> _SiteIndex:
        """Every site's origins and tag path, from one scan of the sites table.

        Rebuilt when older than the TTL, or when ``found`` says the answer is missing, so a
        site created a moment ago works at once; but at most once a second, because misses
        come from requests anyone can send (random paths, random Origin headers).
        """
        now = time.monotonic()
        index = self._site_index
        if now < index.built_at + self._ttl and (
            found(index) or now < index.built_at + MISS_REFRESH_S
        ):
            return index
        with self._engine.connect() as conn:
            sites = [_site(row) for row in conn.execute(select(store.sites)).mappings()]
        index = _SiteIndex(
            built_at=now,
            origins=frozenset(o for site in sites for o in site.origins),
            tag_paths={s.settings.tag_path: s.id for s in sites if s.settings.tag_path},
        )
        self._site_index = index
        return index

    def _lookup(self, column: str, value: str) -> tuple[Site, _Secrets] | None:
        if not _could_be_stored(value):
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((column, value))
        if hit and hit[0] > now:
            return hit[1], hit[2]
        t = store.sites
        with self._engine.connect() as conn:
            row = conn.execute(select(t).where(t.c[column] == value)).mappings().first()
        if row is None:
            return None
        found = (
            _site(row),
            _Secrets(
                row["secret_hash"], row["previous_secret_hash"], row["previous_secret_expires_at"]
            ),
        )
        with self._lock:
            self._cache[(column, value)] = (now + self._ttl, *found)
        return found
