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
``FIRSTTAG_PUBLIC_URL``        unset: taken from each request's host
``FIRSTTAG_MAX_BODY_BYTES``    ``65536``
``FIRSTTAG_BATCH_SIZE``        ``1000`` events per database transaction
``FIRSTTAG_MAX_BACKLOG``       ``2000000`` waiting events before writes answer 429
``FIRSTTAG_REDIS_FSYNC``       ``always``: the embedded Redis fsyncs its append-only file
                               before answering (``everysec``: faster, may lose the last
                               second of acknowledged events if the machine crashes)
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

DEFAULT_DATA_DIR = "firsttag-data"


@dataclass(frozen=True)
class Config:
    """Resolved settings for one process."""

    data_dir: Path
    database_url: str
    redis_url: str | None
    secret_key: str
    public_url: str | None = None
    max_body_bytes: int = 64 * 1024
    batch_size: int = 1000
    max_backlog: int = 2_000_000
    redis_fsync: str = "always"
    redis_maxmemory: int = 1024**3
    queue_name: str = "firsttag"

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
            public_url=(env.get("FIRSTTAG_PUBLIC_URL") or "").rstrip("/") or None,
            max_body_bytes=_int(env, "FIRSTTAG_MAX_BODY_BYTES", 64 * 1024),
            batch_size=_int(env, "FIRSTTAG_BATCH_SIZE", 1000),
            max_backlog=_int(env, "FIRSTTAG_MAX_BACKLOG", 2_000_000),
            redis_fsync=_choice(env, "FIRSTTAG_REDIS_FSYNC", ("always", "everysec")),
            redis_maxmemory=_size(env, "FIRSTTAG_REDIS_MAXMEMORY", _default_maxmemory()),
        )


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
