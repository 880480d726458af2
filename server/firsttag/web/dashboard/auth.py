"""Who is signed in, and what they may open: login, logout and the access checks.

Helpers for dashboard views (import them from here):

- ``@require_site("viewer")`` / ``@require_site("owner")``: for a route with a
  ``<site_id>`` in its URL. Sends a visitor who is not signed in to the login page (and
  back afterwards); answers a 403 page when the user has no such role on that site (or the
  site does not exist: a user cannot probe for other sites' IDs). Otherwise calls the view
  with ``site=`` the :class:`~firsttag.sites.Site` (read fresh from the store) instead of
  ``site_id``, and sets ``g.user`` (:class:`~firsttag.users.User`) and ``g.role``.
- ``@login_required``: the same for pages that are not about one site (``g.user``).
- :func:`current_user`: the signed-in user, or None.

The session is Flask's signed cookie (``firsttag_session``: HttpOnly, SameSite=Lax, Secure
when ``FIRSTTAG_PUBLIC_URL`` is https), signed with a key derived from
``FIRSTTAG_SECRET_KEY``. It holds the user's id, when they signed in, and a stamp of their
password hash: it ends ``FIRSTTAG_SESSION_MAX_AGE_S`` after login, and at once when the
password is reset. Login attempts are rate limited per client address and per email
(``FIRSTTAG_RATE_LOGIN``) in Redis, failing closed: no Redis, no login.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import Forbidden, TooManyRequests

from firsttag import users
from firsttag.limiter import Limit, client_subject
from firsttag.sites import get_site
from firsttag.users import User
from firsttag.web.context import EXTENSION, Services, services
from firsttag.web.dashboard.blueprint import bp

F = TypeVar("F", bound=Callable[..., Any])

SESSION_COOKIE = "firsttag_session"


def configure(app: Flask) -> None:
    """Set up the session cookie and CSRF protection of the dashboard on ``app``.

    CSRF: Flask-WTF's :class:`~flask_wtf.csrf.CSRFProtect` makes and checks the tokens
    (signed with the app key, bound to the session, time-limited, and over HTTPS the
    Referer must be this origin), but only for dashboard forms: it does not check by
    default (``WTF_CSRF_CHECK_DEFAULT`` off), and the dashboard's ``before_request`` calls
    ``protect()`` on every POST. The API blueprints authenticate with keys, not cookies,
    and must not demand a token.
    """
    config = cast(Services, app.extensions[EXTENSION]).config
    # A key of its own, so a session cookie can never pass for another signed value.
    app.secret_key = hmac.new(
        config.secret_key.encode(), b"firsttag dashboard session", hashlib.sha256
    ).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=config.session_max_age_s,
        # The signature's own age is checked on load too: never re-sign to extend it.
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=config.session_max_age_s,
        WTF_CSRF_FIELD_NAME="csrf_token",
    )
    CSRFProtect(app)
    app.session_interface = _CookieFirstSessionInterface()


@bp.before_request
def _protect_forms() -> None:
    # Every state-changing dashboard request is a POST form: each one needs its token.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        cast(CSRFProtect, current_app.extensions["csrf"]).protect()


def current_user() -> User | None:
    """The signed-in user, or None (not signed in, session expired, password changed)."""
    if "user" in g:
        return cast(User | None, g.user)
    g.user = None
    user_id, signed_in_at, stamp = (session.get(k) for k in ("uid", "iat", "pw"))
    if not isinstance(user_id, int) or not isinstance(signed_in_at, int | float):
        return None
    if time.time() - signed_in_at > services().config.session_max_age_s:
        session.clear()
        return None
    user = users.get_user(services().engine, user_id)
    if (
        user is None
        or not isinstance(stamp, str)
        or not hmac.compare_digest(stamp, user.password_stamp)
    ):
        session.clear()
        return None
    g.user = user
    return user


def _to_login() -> Any:
    return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))


def login_required(view: F) -> F:
    """Send visitors who are not signed in to the login page; sets ``g.user``."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return _to_login()
        return view(*args, **kwargs)

    return cast(F, wrapped)


def require_site(role: str = "viewer") -> Callable[[F], F]:
    """Let only users with ``role`` (or more) on the URL's ``<site_id>`` in: see above."""
    if role not in users.ROLES:
        raise ValueError(f"role must be one of {users.ROLES}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, site_id: str, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return _to_login()
            s = services()
            granted = users.role_for(s.engine, user.id, site_id)
            site = get_site(s.engine, site_id) if granted else None
            if site is None or not users.allows(granted, role):
                what = "the settings of this site" if granted else "this site"
                raise Forbidden(f"You do not have access to {what}.")
            g.role = granted
            return view(*args, site=site, **kwargs)

        return cast(F, wrapped)

    return decorate


#: C0 controls, space and DEL: URL parsers strip some of them, none belongs in a path.
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _safe_next(target: str | None) -> str:
    # Only a path on this server: never //evil.example or https://evil.example. Control
    # characters are refused first: URL parsers drop tabs and newlines, so "/\t/evil.example"
    # would become the Location "//evil.example" (found by an outside review).
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not _CONTROL.search(target)
    ):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("dashboard.sites")


def _login_allowed(email: str) -> bool:
    s = services()
    per_minute = s.config.rate_login
    account = hashlib.sha256(email.encode()).hexdigest()[:32]  # no address in Redis keys
    verdict = s.limiter.hit(
        [
            Limit("login-ip", client_subject(request.remote_addr), per_minute),
            Limit("login-email", account, per_minute),
        ]
    )
    # Fail closed: without Redis nothing counts the guesses, so nobody signs in.
    return verdict is not None and verdict.allowed


@bp.get("/")
def root() -> Any:
    """The server's root: the sites page when signed in, else the login page."""
    if current_user() is None:
        return redirect(url_for("dashboard.login"))
    return redirect(url_for("dashboard.sites"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with email and password."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(next_url)
        return render_template("dashboard/login.html", next=next_url, email="", error=None)
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    if not _login_allowed(email):
        raise TooManyRequests()
    user = users.authenticate(services().engine, email, password) if email else None
    if user is None:
        return (
            render_template(
                "dashboard/login.html",
                next=next_url,
                email=email,
                error="That email and password do not match an account.",
            ),
            401,
        )
    session.clear()  # a fresh session: nothing chosen before login survives it
    session.permanent = True
    session.update(uid=user.id, iat=int(time.time()), pw=user.password_stamp)
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Any:
    """Sign out (a POST with the CSRF token, so no other site can sign a user out)."""
    session.clear()
    return redirect(url_for("dashboard.login"))


class _CookieFirstSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for a request with no cookie.

    Flask opens the session of every request, and its signer (an itsdangerous serializer
    made anew each time) cost ~25 µs of each beacon and tag request, none of which carries
    a dashboard cookie. Without one the answer is the same: an empty new session.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session when the request has no session cookie, else Flask's own."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
