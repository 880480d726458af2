"""Signed session keys (``cl_sk``).

A session key names a site and a session and carries an HMAC made with the server secret
(itsdangerous). Anyone can read it; nobody without the secret can make or alter one, so a
forged key is recognised without a database read. Signing is deterministic: registering
the same session twice yields the same key.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer


class SessionKeys:
    """Issues and opens session keys for one server secret."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="firsttag.session-key")

    def issue(self, site_id: str, session_id: str) -> str:
        """The session key of ``session_id`` on ``site_id``."""
        return self._serializer.dumps([site_id, session_id])

    def open(self, session_key: str) -> tuple[str, str] | None:
        """Return ``(site_id, session_id)`` for an authentic key, or None for anything else."""
        try:
            value = self._serializer.loads(session_key)
        except (BadSignature, ValueError, UnicodeError):
            return None
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ):
            return value[0], value[1]
        return None
