"""Dashboard users, their passwords and their per-site roles.

A user is an email address and an Argon2id password hash (``argon2-cffi``'s
:class:`~argon2.PasswordHasher` with its RFC 9106 defaults). A user sees a site only through
a grant, ``owner`` or ``viewer``:

========  ===========================================================================
role      may
========  ===========================================================================
viewer    open the site's reports (overview, conversions, customers, exports)
owner     everything a viewer may, and the site's settings and keys
========  ===========================================================================

Helpers for the web tier and the CLI:

- :func:`hash_password`, :func:`verify_password`, :func:`needs_rehash`: the password rules.
- :func:`create_user`, :func:`authenticate`, :func:`set_password`, :func:`get_user`,
  :func:`list_users`: accounts.
- :func:`grant`, :func:`revoke`, :func:`role_for`, :func:`granted_sites`, :func:`allows`:
  who sees what. Every dashboard page asks :func:`role_for` (through
  ``firsttag.web.dashboard.auth.require_site``).

Pure: no Flask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, delete, insert, select, update

from firsttag import store

#: Roles, weakest first: a role allows everything the roles before it allow.
ROLES = ("viewer", "owner")

#: Passwords shorter than this are refused (NIST SP 800-63B asks for at least 8).
MIN_PASSWORD_LENGTH = 10
#: Longer ones too: hashing megabytes on every login attempt is a denial of service.
MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher()  # stateless and thread-safe: its parameters only
# Verified when an email is unknown, so a login takes as long whether or not it exists.
_DUMMY_HASH = _HASHER.hash("firsttag: no such user")


@dataclass(frozen=True)
class User:
    """A dashboard user as the web tier sees it (the hash stays in the store)."""

    id: int
    email: str
    created_at: str
    #: Changes whenever the password does: a session remembers it, so a reset ends them.
    password_stamp: str


def hash_password(password: str) -> str:
    """The Argon2id PHC string of ``password``; ValueError when its length is refused."""
    check_password(password)
    return _HASHER.hash(password)


def check_password(password: str) -> str:
    """``password``, or ValueError saying why it is refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash`` (constant time inside Argon2)."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return _HASHER.check_needs_rehash(password_hash)


def normalise_email(raw: str) -> str:
    """``raw`` stripped and lower-cased; ValueError unless it looks like an address."""
    email = raw.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise ValueError(f"email must look like name@example.com, got {raw!r}")
    return email


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        created_at=row["created_at"],
        password_stamp=_stamp(row["password_hash"]),
    )


def create_user(engine: Engine, email: str, password: str) -> User:
    """Create a user; ValueError for a bad email or password, or one that exists."""
    email = normalise_email(email)
    password_hash = hash_password(password)
    with engine.begin() as conn:
        if conn.execute(select(store.users.c.id).where(store.users.c.email == email)).first():
            raise ValueError(f"a user {email} exists already")
        conn.execute(
            insert(store.users).values(
                email=email, password_hash=password_hash, created_at=store.utcnow()
            )
        )
        row = conn.execute(select(store.users).where(store.users.c.email == email)).mappings()
        return _user(row.one())


def get_user(engine: Engine, user_id: int) -> User | None:
    """The user with this id, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(store.users).where(store.users.c.id == user_id)).mappings()
        found = row.first()
    return _user(found) if found else None


def find_user(engine: Engine, email: str) -> User | None:
    """The user with this email (any case), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(store.users).where(store.users.c.email == email.strip().lower())
        ).mappings()
        found = row.first()
    return _user(found) if found else None


def authenticate(engine: Engine, email: str, password: str) -> User | None:
    """The user whose email and password these are, or None.

    An unknown email costs one Argon2 verification too, so timing does not tell which
    addresses have accounts. A hash made with weaker parameters is upgraded on success.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    with engine.connect() as conn:
        row = (
            conn.execute(select(store.users).where(store.users.c.email == email.strip().lower()))
            .mappings()
            .first()
        )
    if row is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(row["password_hash"], password):
        return None
    if needs_rehash(row["password_hash"]):
        new_hash = _HASHER.hash(password)
        with engine.begin() as conn:
            conn.execute(
                update(store.users)
                .where(store.users.c.id == row["id"])
                .values(password_hash=new_hash)
            )
        # The stamp follows the hash: the session made now must match what is stored.
        return get_user(engine, row["id"])
    return _user(row)


def set_password(engine: Engine, email: str, password: str) -> User:
    """Give a user a new password, which also ends every session they have."""
    password_hash = hash_password(password)
    email = email.strip().lower()
    with engine.begin() as conn:
        done = conn.execute(
            update(store.users)
            .where(store.users.c.email == email)
            .values(password_hash=password_hash)
        ).rowcount
    if not done:
        raise ValueError(f"no user {email}")
    user = find_user(engine, email)
    assert user is not None
    return user


def list_users(engine: Engine) -> list[tuple[User, dict[str, str]]]:
    """Every user, oldest first, with their grants (site id → role)."""
    with engine.connect() as conn:
        users = [_user(r) for r in conn.execute(select(store.users).order_by("id")).mappings()]
        grants: dict[int, dict[str, str]] = {}
        g = store.site_grants
        for user_id, site_id, role in conn.execute(
            select(g.c.user_id, g.c.site_id, g.c.role).order_by(g.c.site_id)
        ):
            grants.setdefault(user_id, {})[site_id] = role
    return [(u, grants.get(u.id, {})) for u in users]


def grant(engine: Engine, email: str, site_id: str, role: str) -> None:
    """Let the user see ``site_id`` as ``role`` (replacing any role they had there)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    user = find_user(engine, email)
    if user is None:
        raise ValueError(f"no user {email.strip().lower()}")
    with engine.begin() as conn:
        if not conn.execute(select(store.sites.c.id).where(store.sites.c.id == site_id)).first():
            raise ValueError(f"no site {site_id}")
        g = store.site_grants
        conn.execute(delete(g).where(g.c.user_id == user.id, g.c.site_id == site_id))
        conn.execute(
            insert(g).values(user_id=user.id, site_id=site_id, role=role, created_at=store.utcnow())
        )


def revoke(engine: Engine, email: str, site_id: str) -> bool:
    """Take ``site_id`` away from the user; False when they had no grant there."""
    user = find_user(engine, email)
    if user is None:
        raise ValueError(f"no user {email.strip().lower()}")
    g = store.site_grants
    with engine.begin() as conn:
        done = conn.execute(delete(g).where(g.c.user_id == user.id, g.c.site_id == site_id))
    return bool(done.rowcount)


def site_users(engine: Engine, site_id: str) -> list[tuple[User, str]]:
    """The users granted ``site_id``, with their role, by email."""
    g, u = store.site_grants, store.users
    with engine.connect() as conn:
        rows = conn.execute(
            select(u, g.c.role)
            .join(g, g.c.user_id == u.c.id)
            .where(g.c.site_id == site_id)
            .order_by(u.c.email)
        ).mappings()
        return [(_user(r), r["role"]) for r in rows]


def role_for(engine: Engine, user_id: int, site_id: str) -> str | None:
    """The user's role on ``site_id``, or None when they may not see it."""
    g = store.site_grants
    with engine.connect() as conn:
        return conn.execute(
            select(g.c.role).where(g.c.user_id == user_id, g.c.site_id == site_id)
        ).scalar()


def granted_sites(engine: Engine, user_id: int) -> dict[str, str]:
    """The sites the user may see (site id → role)."""
    g = store.site_grants
    with engine.connect() as conn:
        return dict(conn.execute(select(g.c.site_id, g.c.role).where(g.c.user_id == user_id)).all())


def allows(role: str | None, needed: str) -> bool:
    """True when ``role`` is at least ``needed`` (an owner may do what a viewer may)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)
