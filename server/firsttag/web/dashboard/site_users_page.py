"""The users of a site, managed by its owners from Settings: grant a role, revoke it.

An owner gives an existing user (``firsttag users create`` makes users; the dashboard
never sets passwords) the ``viewer`` or ``owner`` role on this site by email, changes it,
or takes it away, through :func:`firsttag.users.grant` and :func:`firsttag.users.revoke`,
the same functions as ``firsttag users grant|revoke``. Every form is a CSRF-protected
POST (see :mod:`.auth`), owner-only. A site always keeps one owner: the last one cannot
be demoted or removed here (the CLI can), so nobody locks a site's settings away by a click.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for

from firsttag import users
from firsttag.sites import Site
from firsttag.web.context import services
from firsttag.web.dashboard.auth import require_site
from firsttag.web.dashboard.blueprint import bp
from firsttag.web.dashboard.settings_page import settings_page


def _last_owner(site: Site, email: str) -> bool:
    owners = [
        u.email for u, role in users.site_users(services().engine, site.id) if role == "owner"
    ]
    return owners == [email]


def _email() -> str:
    try:
        return users.normalise_email(request.form.get("email", ""))
    except ValueError as exc:
        raise ValueError(f"email: {exc}") from None


@bp.post("/sites/<site_id>/settings/users", endpoint="grant_site_user")
@require_site("owner")
def grant_site_user(site: Site) -> Any:
    """Give an existing user a role on this site (or change theirs); 400 naming a bad field."""
    role = request.form.get("role", "")
    try:
        email = _email()
        if role not in users.ROLES:
            raise ValueError(f"role: one of {', '.join(users.ROLES)}")
        if users.find_user(services().engine, email) is None:
            raise ValueError(
                f"email: no user {email}; an administrator creates users with firsttag users create"
            )
        if role != "owner" and _last_owner(site, email):
            raise ValueError("role: the last owner of this site stays an owner")
        users.grant(services().engine, email, site.id, role)
    except ValueError as exc:
        return settings_page(site, 400, error=str(exc))
    flash(f"{email} is now {'an' if role == 'owner' else 'a'} {role} of this site.")
    return redirect(url_for("dashboard.settings", site_id=site.id, _anchor="users-title"), 303)


@bp.post("/sites/<site_id>/settings/users/revoke", endpoint="revoke_site_user")
@require_site("owner")
def revoke_site_user(site: Site) -> Any:
    """Take this site away from a user (not from its last owner)."""
    try:
        email = _email()
        if _last_owner(site, email):
            raise ValueError("email: the last owner of this site cannot be removed")
        if not users.revoke(services().engine, email, site.id):
            raise ValueError(f"email: {email} has no role on this site")
    except ValueError as exc:
        return settings_page(site, 400, error=str(exc))
    flash(f"{email} can no longer see this site." if email != g.user.email
          else "You can no longer see this site.")  # fmt: skip
    if email == g.user.email:
        return redirect(url_for("dashboard.sites"), 303)
    return redirect(url_for("dashboard.settings", site_id=site.id, _anchor="users-title"), 303)
