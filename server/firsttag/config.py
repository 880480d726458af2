"""Configuration read from environment variables, with documented defaults.

Every setting has one environment variable. ``firsttag serve`` passes the values it
resolves (for example the URL of the Redis server it started) to its children through
the same variables, so the web and worker processes configure themselves identically.

=============================  ==========================================================
variable                       default
=============================  ==========================================================
``FIRSTTAG_DATA_DIR``          ``./firsttag-data``: SQLite file, Redis data, secret key;
                               made owner-only (0700) on start
``FIRSTTAG_DATABASE_URL``      ``sqlite:///<data dir>/firsttag.db``
``FIRSTTAG_REDIS_URL``         unset: ``firsttag serve`` starts a Redis server of its own
``FIRSTTAG_SECRET_KEY``        generated once into ``<data dir>/secret_key``
``FIRSTTAG_PUBLIC_URL``        ``http://127.0.0.1:8000``; ``firsttag serve``: the address it
                               listens on. The origin tags, GTM files, install pages and
                               ``sites create`` print; never taken from a request's Host
``FIRSTTAG_MAX_BODY_BYTES``    ``65536``
``FIRSTTAG_BATCH_SIZE``        ``1000`` events per database transaction
``FIRSTTAG_DRAIN_LINGER_MS``   ``100``: once the worker has caught up, it waits this long
                               between batches, so that events arriving meanwhile share
                               one transaction (adds at most this to accepted -> stored);
                               it lets go of the buffer after 10 such empty waits
``FIRSTTAG_MAX_BACKLOG``       ``2000000`` waiting events before writes answer 429
``FIRSTTAG_MAX_SITE_BACKLOG_BYTES``  ``67108864`` (64 MiB) waiting bytes of one site before
                               that site's writes answer 429 (other sites go on)
``FIRSTTAG_MAX_BACKLOG_BYTES`` ``536870912`` (512 MiB) waiting bytes of all sites together
``FIRSTTAG_READY_HEARTBEAT_S`` ``30``: ``/readyz`` fails when events wait and no worker has
                               shown life for this long
``FIRSTTAG_READY_EVENT_AGE_S`` ``300``: ``/readyz`` fails when the oldest waiting event is
                               older than this
``FIRSTTAG_REDIS_FSYNC``       ``always``: the embedded Redis fsyncs its append-only file
                               before answering (``everysec``: faster, may lose the last
                               second of acknowledged events if the machine crashes)
``FIRSTTAG_WEB_THREADS``       ``32`` WSGI threads per web process of ``firsttag serve``:
                               requests waiting for Redis's fsync hold no CPU
``FIRSTTAG_RATE_PER_IP``       ``300`` browser requests per minute from one client address
                               (an IPv6 client: its /64), all sites together; a burst of
                               that many, then one per 60/N s
``FIRSTTAG_RATE_BROWSER``      ``60000`` browser requests per minute per site (sessions,
                               beacons, verifications); a site may set its own
``FIRSTTAG_RATE_SERVER``       ``60000`` server events per minute per site (secret key; a
                               batch counts its items); a site may set its own
``FIRSTTAG_RATE_READS``        ``600`` analytics and conversion reads per minute per site
``FIRSTTAG_RATE_LOGIN``        ``10`` dashboard login attempts per minute from one client
                               address, and as many for one email address
``FIRSTTAG_SESSION_MAX_AGE_S`` ``43200`` (12 h): a dashboard login lasts this long, then
                               the user signs in again
``FIRSTTAG_TRUSTED_PROXIES``   unset: the client is the TCP peer and ``X-Forwarded-For`` is
                               ignored. A count (``1``: one proxy in front) or
                               comma-separated CIDRs of the proxies (``10.0.0.0/8``)
``FIRSTTAG_WAIT_SLOTS``        ``2`` ``mode: "wait"`` requests one web process holds at a
                               time; more are answered at once, as queued
                               (``pending``: 202, or 200 on Dub's routes)
``FIRSTTAG_WAIT_SLOTS_SITE``   ``1`` of those slots one site may hold
``FIRSTTAG_METRICS_TOKEN``     unset: ``GET /metrics`` answers loopback peers that no proxy
                               forwarded. Set: only ``Authorization: Bearer <token>``
``FIRSTTAG_LOG_LEVEL``         ``info``: JSON log lines on stdout at this level and above
                               (``debug``, ``info``, ``warning``, ``error``)
``FIRSTTAG_WORKER_METRICS_PORT``  unset: ``firsttag worker`` serves no metrics of its own
                               (``serve`` and ``web`` on its host show them). Set: the
                               worker serves ``/metrics`` on this port
``FIRSTTAG_WORKER_METRICS_HOST``  ``127.0.0.1``: the address of that port
``PROMETHEUS_MULTIPROC_DIR``   set by ``serve``/``web``/``worker`` to ``<data dir>/metrics``
                               (emptied on start) unless given: where the processes of
                               one host count
``FIRSTTAG_REDIS_MAXMEMORY``   a quarter of the machine's RAM, at most ``1gb``: the
                               embedded Redis's ``maxmemory`` (bytes, or Redis units such
                               as ``512mb``, ``2gb``). It never evicts: past the limit it
                               refuses writes and the web tier answers 503. A Redis given
                               by ``FIRSTTAG_REDIS_URL`` is configured by its owner.
=============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATA_DIR = "firsttag-data"
#: Where tags point when nothing says otherwise: ``firsttag serve``'s default address.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    """Resolved settings for one process."""

    data_dir: Path
    database_url: str
    redis_url: str | None
    secret_key: str
    public_url: str = DEFAULT_PUBLIC_URL
    max_body_bytes: int = 64 * 1024
    batch_size: int = 1000
    drain_linger_ms: int = 100
    max_backlog: int = 2_000_000
    max_site_backlog_bytes: int = 64 * 1024 * 1024
    max_backlog_bytes: int = 512 * 1024 * 1024
    ready_heartbeat_s: int = 30
    ready_event_age_s: int = 300
    redis_fsync: str = "always"
    web_threads: int = 32
    redis_maxmemory: int = 1024**3
    queue_name: str = "firsttag"
    rate_per_ip: int = 300
    rate_browser: int = 60_000
    rate_server: int = 60_000
    rate_reads: int = 600
    trusted_proxies: str | None = None
    wait_slots: int = 2
    wait_slots_site: int = 1
    metrics_token: str | None = None
    rate_login: int = 10
    session_max_age_s: int = 12 * 3600

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> Config:
        """Build a config from ``FIRSTTAG_*`` variables; ``data_dir`` overrides the variable."""
        env = os.environ
        root = Path(data_dir or env.get("FIRSTTAG_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
        _owner_only_dir(root)
        database_url = env.get("FIRSTTAG_DATABASE_URL")
        if not database_url:
            database_url = f"sqlite:///{_owner_only_database(root / 'firsttag.db')}"
        return cls(
            data_dir=root,
            database_url=database_url,
            redis_url=env.get("FIRSTTAG_REDIS_URL") or None,
            secret_key=env.get("FIRSTTAG_SECRET_KEY") or _stored_secret(root),
            public_url=public_url(env.get("FIRSTTAG_PUBLIC_URL") or DEFAULT_PUBLIC_URL),
            max_body_bytes=_int(env, "FIRSTTAG_MAX_BODY_BYTES", 64 * 1024),
            batch_size=_int(env, "FIRSTTAG_BATCH_SIZE", 1000),
            drain_linger_ms=_int(env, "FIRSTTAG_DRAIN_LINGER_MS", 100),
            max_backlog=_int(env, "FIRSTTAG_MAX_BACKLOG", 2_000_000),
            max_site_backlog_bytes=_int(env, "FIRSTTAG_MAX_SITE_BACKLOG_BYTES", 64 * 1024 * 1024),
            max_backlog_bytes=_int(env, "FIRSTTAG_MAX_BACKLOG_BYTES", 512 * 1024 * 1024),
            ready_heartbeat_s=_int(env, "FIRSTTAG_READY_HEARTBEAT_S", 30),
            ready_event_age_s=_int(env, "FIRSTTAG_READY_EVENT_AGE_S", 300),
            redis_fsync=_choice(env, "FIRSTTAG_REDIS_FSYNC", ("always", "everysec")),
            web_threads=_int(env, "FIRSTTAG_WEB_THREADS", 32),
            rate_per_ip=_int(env, "FIRSTTAG_RATE_PER_IP", 300),
            rate_browser=_int(env, "FIRSTTAG_RATE_BROWSER", 60_000),
            rate_server=_int(env, "FIRSTTAG_RATE_SERVER", 60_000),
            rate_reads=_int(env, "FIRSTTAG_RATE_READS", 600),
            trusted_proxies=env.get("FIRSTTAG_TRUSTED_PROXIES") or None,
            wait_slots=_int(env, "FIRSTTAG_WAIT_SLOTS", 2),
            wait_slots_site=_int(env, "FIRSTTAG_WAIT_SLOTS_SITE", 1),
            metrics_token=env.get("FIRSTTAG_METRICS_TOKEN") or None,
            rate_login=_int(env, "FIRSTTAG_RATE_LOGIN", 10),
            session_max_age_s=_int(env, "FIRSTTAG_SESSION_MAX_AGE_S", 12 * 3600),
            redis_maxmemory=_size(env, "FIRSTTAG_REDIS_MAXMEMORY", _default_maxmemory()),
        )


def public_url(raw: str) -> str:
    """``raw`` as a public base URL without its trailing slash, or SystemExit saying why.

    Only ``http(s)://host[:port][/path]``: the value is printed into tags and pages, so
    anything else (credentials, a query, a fragment) is refused rather than escaped later.
    """
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or any(c.isspace() or c in "?#\"'<>\\" for c in url)
    ):
        raise SystemExit(
            f"public URL must look like https://tags.example.com[:port][/path], got {raw!r}"
        )
    return url


def listen_url(host: str, port: int) -> str:
    """The URL of a server listening on ``host``:``port`` (IPv6 addresses in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _int(env: os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {value}")
    return value


def _choice(env: os._Environ[str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _stored_secret(root: Path) -> str:
    """Return the server secret kept in the data dir, creating it on first use.

    The file is written under a temporary name and hard-linked into place, so it appears
    whole or not at all, and two processes starting at once agree on one secret: the
    loser of the race finds the winner's file and reads it.
    """
    path = root / "secret_key"
    if not path.exists():
        tmp = root / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _owner_only_dir(root: Path) -> None:
    """Create the data dir 0700, or tighten one an older version created 0755.

    Everything firsttag keeps is inside it (database, Redis files, secret key), so an
    owner-only directory protects files created before their own modes were tightened.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        root.chmod(0o700)


def _owner_only_database(path: Path) -> Path:
    """Create the SQLite file 0600 before SQLite does, so whoever runs first, it is private.

    An empty file is a valid empty database, and SQLite gives its -wal, -shm and -journal
    files the mode of the database file, whatever the umask of the process.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


# Redis's own units: k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.ASCII)


def _size(env: os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    match = _SIZE.fullmatch(raw.lower())
    if not match or match.group(2) not in _UNITS or int(match.group(1)) == 0:
        raise SystemExit(f"{name} must be a positive size such as 512mb or 2gb, got {raw!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _default_maxmemory() -> int:
    """A quarter of physical memory, at most 1 GiB: room for Redis next to the workers."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not every platform reports it
        return 1024**3
    return min(1024**3, max(64 * 1024**2, ram // 4))
