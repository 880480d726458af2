"""The dashboard's gate: login, logout, expiry, CSRF, rate limits, roles, key rotation.

Every test talks HTTP to the real app on loopback (werkzeug server thread), with real
Redis and a real SQLite file (or PostgreSQL with FIRSTTAG_TEST_DATABASE_URL).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from firsttag import sites as site_rules
from firsttag import users
from firsttag.sites import create_site, get_site
from firsttag.web.app import create_app
from werkzeug.serving import make_server

from tests.support import config_env, wait_until

PASSWORD = "correct horse battery staple"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture
def app(config):
    # A low login limit so the rate-limit test needs few attempts.
    return create_app(replace(config, rate_login=3))


@pytest.fixture
def base(app) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture
def shop(engine):
    """Two sites: an owner of the first, a viewer of the first, nobody's second."""
    first, secret = create_site(engine, "First Shop", ["https://first.example"])
    second, _ = create_site(engine, "Second Shop", ["https://second.example"])
    users.create_user(engine, "owner@example.com", PASSWORD)
    users.create_user(engine, "viewer@example.com", PASSWORD)
    users.grant(engine, "owner@example.com", first.id, "owner")
    users.grant(engine, "viewer@example.com", first.id, "viewer")
    return {"first": first, "second": second, "secret": secret}


def csrf(page: requests.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(base: str, email: str, password: str = PASSWORD) -> requests.Session:
    browser = requests.Session()
    form = browser.get(f"{base}/login", timeout=10)
    answer = browser.post(
        f"{base}/login",
        data={"email": email, "password": password, "csrf_token": csrf(form)},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.url == f"{base}/sites", answer.text
    return browser


def settings_form(site, **overrides: Any) -> dict[str, Any]:
    form = {
        "origins": "\n".join(site.origins),
        "attribution_window_days": str(site.settings.attribution_window_days),
        "counting_statuses": list(site.settings.counting_statuses),
        "global_name": site.settings.global_name,
        "tag_path": site.settings.tag_path or "",
        "time_zone": site.settings.time_zone,
    }
    form.update(overrides)
    return form


def test_root_leads_to_login_then_to_the_sites_the_user_may_see(base, shop):
    first_visit = requests.get(base + "/", timeout=10)
    assert first_visit.url == f"{base}/login"
    assert 'type="password"' in first_visit.text

    browser = log_in(base, "Owner@Example.com")  # any case
    sites = browser.get(f"{base}/sites", timeout=10)
    assert "First Shop" in sites.text
    assert "Second Shop" not in sites.text  # granted sites only
    assert browser.get(base + "/", timeout=10).url == f"{base}/sites"


def test_wrong_password_is_refused_without_saying_which_part(base, shop):
    browser = requests.Session()
    form = browser.get(f"{base}/login", timeout=10)
    for email in ("owner@example.com", "nobody@example.com"):
        answer = browser.post(
            f"{base}/login",
            data={"email": email, "password": "wrong password!", "csrf_token": csrf(form)},
            timeout=10,
        )
        assert answer.status_code == 401
        assert "do not match an account" in answer.text
    assert browser.get(f"{base}/sites", timeout=10).url.startswith(f"{base}/login")


def test_session_cookie_is_httponly_lax_and_secure_on_https(config, engine, shop):
    for public_url, secure in (("http://127.0.0.1:8000", False), ("https://t.example", True)):
        app = create_app(replace(config, public_url=public_url))
        with serving(app) as url:
            # The login form already starts the session (it holds the CSRF token).
            cookie = requests.get(f"{url}/login", timeout=10).headers["Set-Cookie"]
            assert cookie.startswith("firsttag_session=")
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
            assert ("; Secure" in cookie) is secure


def test_logout_ends_the_session(base, shop):
    browser = log_in(base, "owner@example.com")
    page = browser.get(f"{base}/sites", timeout=10)
    out = browser.post(f"{base}/logout", data={"csrf_token": csrf(page)}, timeout=10)
    assert out.url == f"{base}/login"
    assert browser.get(f"{base}/sites", timeout=10).url.startswith(f"{base}/login")


def test_a_stolen_cookie_stops_working_when_the_session_expires(config, engine, shop):
    app = create_app(replace(config, session_max_age_s=1))
    with serving(app) as url:
        browser = log_in(url, "owner@example.com")
        wait_until(
            lambda: browser.get(f"{url}/sites", timeout=10).url.startswith(f"{url}/login"),
            what="the session to expire",
        )
        # Replaying the old cookie is no better than the browser that held it.
        replay = requests.get(f"{url}/sites", cookies=browser.cookies, timeout=10)
        assert replay.url.startswith(f"{url}/login")


def test_a_password_reset_ends_existing_sessions(base, engine, shop):
    browser = log_in(base, "owner@example.com")
    users.set_password(engine, "owner@example.com", "another long password")
    assert browser.get(f"{base}/sites", timeout=10).url.startswith(f"{base}/login")
    log_in(base, "owner@example.com", "another long password")


def test_forms_without_their_csrf_token_are_refused(base, engine, shop):
    site = shop["first"]
    browser = log_in(base, "owner@example.com")
    for token in (None, "forged-token"):
        data = settings_form(site, attribution_window_days="30")
        if token:
            data["csrf_token"] = token
        refused = browser.post(f"{base}/sites/{site.id}/settings", data=data, timeout=10)
        assert refused.status_code == 400
        assert "text/html" in refused.headers["Content-Type"]
        assert "This form was refused" in refused.text
    assert get_site(engine, site.id).settings.attribution_window_days == 7
    # The login form needs one too (no logging a victim into an attacker's account).
    login = requests.post(
        f"{base}/login", data={"email": "owner@example.com", "password": PASSWORD}, timeout=10
    )
    assert login.status_code == 400


def test_login_attempts_are_rate_limited(base, shop):
    browser = requests.Session()
    token = csrf(browser.get(f"{base}/login", timeout=10))
    codes = [
        browser.post(
            f"{base}/login",
            data={"email": "owner@example.com", "password": f"guess {n}", "csrf_token": token},
            timeout=10,
        ).status_code
        for n in range(3)
    ]
    assert codes == [401, 401, 401]
    # The limit (3 a minute here) is spent: even the right password waits now.
    blocked = browser.post(
        f"{base}/login",
        data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": token},
        timeout=10,
    )
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.text
    assert browser.get(f"{base}/sites", timeout=10).url.startswith(f"{base}/login")


def test_a_viewer_cannot_open_or_change_settings(base, engine, shop):
    site = shop["first"]
    browser = log_in(base, "viewer@example.com")
    page = browser.get(f"{base}/sites", timeout=10)
    assert "First Shop" in page.text
    refused = browser.get(f"{base}/sites/{site.id}/settings", timeout=10)
    assert refused.status_code == 403
    assert "You do not have access to the settings of this site" in refused.text
    post = browser.post(
        f"{base}/sites/{site.id}/settings",
        data=settings_form(site, attribution_window_days="30", csrf_token=csrf(page)),
        timeout=10,
    )
    assert post.status_code == 403
    rotate = browser.post(
        f"{base}/sites/{site.id}/settings/secret-key",
        data={"grace_seconds": "0", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert rotate.status_code == 403
    assert get_site(engine, site.id).settings.attribution_window_days == 7
    assert requests.get(  # the secret key was not replaced
        f"{base}/api/v1/analytics/funnel",
        headers={"Authorization": f"Bearer {shop['secret']}"},
        timeout=10,
    ).ok


def test_a_user_cannot_open_another_sites_pages(base, engine, shop):
    browser = log_in(base, "owner@example.com")
    page = browser.get(f"{base}/sites", timeout=10)
    for site_id in (shop["second"].id, "st_doesnotexist"):
        refused = browser.get(f"{base}/sites/{site_id}/settings", timeout=10)
        assert refused.status_code == 403
        assert "You do not have access to this site" in refused.text
        post = browser.post(
            f"{base}/sites/{site_id}/settings/site-key",
            data={"csrf_token": csrf(page)},
            timeout=10,
        )
        assert post.status_code == 403
    assert get_site(engine, shop["second"].id).site_key == shop["second"].site_key


def test_an_owner_changes_settings_and_a_bad_field_changes_nothing(base, engine, app, shop):
    site = shop["first"]
    browser = log_in(base, "owner@example.com")
    page = browser.get(f"{base}/sites/{site.id}/settings", timeout=10)
    assert page.status_code == 200
    saved = browser.post(
        f"{base}/sites/{site.id}/settings",
        data=settings_form(
            site,
            origins="https://first.example\nhttps://www.first.example",
            attribution_window_days="30",
            counting_statuses=["completed", "processing"],
            time_zone="Europe/Paris",
            consent_required="on",
            csrf_token=csrf(page),
        ),
        timeout=10,
    )
    assert saved.status_code == 200 and "Settings saved." in saved.text
    stored = get_site(engine, site.id)
    assert stored.origins == ("https://first.example", "https://www.first.example")
    assert stored.settings.attribution_window_days == 30
    assert stored.settings.counting_statuses == ("completed", "processing")
    assert stored.settings.time_zone == "Europe/Paris"
    assert stored.settings.consent_required is True
    # The running server uses the new origins at once (no 10 s cache in the way).
    assert (
        app.extensions["firsttag"].sites.by_id(site.id).allows_origin("https://www.first.example")
    )

    bad = browser.post(
        f"{base}/sites/{site.id}/settings",
        data=settings_form(
            stored, origins="https://other.example", time_zone="Mars/Olympus", csrf_token=csrf(page)
        ),
        timeout=10,
    )
    assert bad.status_code == 400
    assert "time zone must be an IANA name" in bad.text
    assert get_site(engine, site.id) == stored  # not the origins either


def funnel_status(base: str, key: str) -> int:
    return requests.get(
        f"{base}/api/v1/analytics/funnel", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).status_code


def test_a_rotated_secret_key_works_during_its_grace_period_then_stops(base, engine, shop):
    site, old_key = shop["first"], shop["secret"]
    browser = log_in(base, "owner@example.com")
    page = browser.get(f"{base}/sites/{site.id}/settings", timeout=10)
    rotated = browser.post(
        f"{base}/sites/{site.id}/settings/secret-key",
        data={"grace_seconds": "3600", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert rotated.status_code == 200
    new_key = re.search(r'id="new-secret-key">(sk_[0-9a-f]+)<', rotated.text).group(1)
    assert "keeps working until" in rotated.text
    # Shown once: the page does not show it again, and only its hash is stored.
    again = browser.get(f"{base}/sites/{site.id}/settings", timeout=10)
    assert new_key not in again.text and old_key not in again.text
    assert funnel_status(base, new_key) == 200
    assert funnel_status(base, old_key) == 200  # grace period

    ended = browser.post(
        f"{base}/sites/{site.id}/settings/secret-key/end-grace",
        data={"csrf_token": csrf(again)},
        timeout=10,
    )
    assert "no longer works" in ended.text
    assert funnel_status(base, old_key) == 401
    assert funnel_status(base, new_key) == 200

    # A grace period that runs out by itself: the old key stops when it ends.
    newest = site_rules.rotate_secret_key(engine, site.id, timedelta(seconds=1))
    assert funnel_status(base, newest) == 200
    wait_until(lambda: funnel_status(base, new_key) == 401, what="the grace period to end")
    assert funnel_status(base, newest) == 200


def run_cli(config, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    answer = f"{password}\n{password}\n" if password is not None else None
    return subprocess.run(
        [sys.executable, "-m", "firsttag.ops.cli", "users", *args],
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
        env=config_env(config),
    )


def test_users_from_the_cli_prompt_for_passwords_and_grant_sites(config, base, engine, shop):
    site = shop["second"]
    created = run_cli(
        config,
        "create",
        "--email",
        "New@Example.com",
        "--site",
        site.id,
        "--role",
        "owner",
        password="a long new password",
    )
    assert created.returncode == 0, created.stderr
    assert "--password" not in run_cli(config, "create", "--help").stdout
    browser = log_in(base, "new@example.com", "a long new password")
    assert browser.get(f"{base}/sites/{site.id}/settings", timeout=10).status_code == 200

    short = run_cli(config, "create", "--email", "x@example.com", password="short")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr

    granted = run_cli(config, "grant", "--email", "new@example.com", "--site", shop["first"].id)
    assert granted.returncode == 0, granted.stderr
    listed = run_cli(config, "list", "--json")
    entry = next(u for u in json.loads(listed.stdout) if u["email"] == "new@example.com")
    assert entry["sites"] == {site.id: "owner", shop["first"].id: "viewer"}

    revoked = run_cli(config, "revoke", "--email", "new@example.com", "--site", site.id)
    assert revoked.returncode == 0
    assert browser.get(f"{base}/sites/{site.id}/settings", timeout=10).status_code == 403

    reset = run_cli(
        config, "reset-password", "--email", "new@example.com", password="yet another password"
    )
    assert reset.returncode == 0, reset.stderr
    assert browser.get(f"{base}/sites", timeout=10).url.startswith(f"{base}/login")
    log_in(base, "new@example.com", "yet another password")


@pytest.mark.parametrize(
    "target",
    ["/%09/evil.example", "/%09%09/evil.example", "/%0A/x", "/%0D/x", "//evil.example",
     "https://evil.example/", "/\\evil.example", "/%20/evil.example"],
)  # fmt: skip
def test_next_never_leaves_this_server(base, shop, target):
    # Found by an outside review: "/\t/evil.example" passed the check and Werkzeug's URL
    # handling made it the Location "//evil.example"; "/\n/x" was a 500.
    browser = log_in(base, "owner@example.com")
    answer = browser.get(f"{base}/login?next={target}", allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    # Where a browser goes: the Location resolved against the page, as browsers do it.
    went = urlsplit(urljoin(f"{base}/login", answer.headers["Location"]))
    assert went.netloc == urlsplit(base).netloc, answer.headers["Location"]


# Owners manage the users of their site from Settings: grant, change, revoke; nobody else.


def roles(engine, site_id: str) -> dict[str, str]:
    return {u.email: role for u, role in users.site_users(engine, site_id)}


def test_an_owner_grants_changes_and_revokes_a_users_access(base, engine, shop):
    site = shop["first"]
    users.create_user(engine, "friend@example.com", PASSWORD)
    owner = log_in(base, "owner@example.com")
    page = owner.get(f"{base}/sites/{site.id}/settings", timeout=10)
    assert 'data-email="viewer@example.com"' in page.text
    assert 'data-email="friend@example.com"' not in page.text

    # Before: the friend sees no site. The owner grants viewer, by email (any case).
    friend = log_in(base, "friend@example.com")
    assert friend.get(f"{base}/sites/{site.id}/overview", timeout=10).status_code == 403
    done = owner.post(
        f"{base}/sites/{site.id}/settings/users",
        data={"email": " Friend@Example.com", "role": "viewer", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert done.status_code == 200 and "friend@example.com is now a viewer" in done.text
    assert 'data-email="friend@example.com"' in done.text
    assert friend.get(f"{base}/sites/{site.id}/overview", timeout=10).status_code == 200
    assert friend.get(f"{base}/sites/{site.id}/settings", timeout=10).status_code == 403

    # Promoted to owner: settings open.
    owner.post(
        f"{base}/sites/{site.id}/settings/users",
        data={"email": "friend@example.com", "role": "owner", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert roles(engine, site.id)["friend@example.com"] == "owner"
    assert friend.get(f"{base}/sites/{site.id}/settings", timeout=10).status_code == 200

    # Revoked: the site is gone for them, at once.
    gone = owner.post(
        f"{base}/sites/{site.id}/settings/users/revoke",
        data={"email": "friend@example.com", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert gone.status_code == 200 and "can no longer see this site" in gone.text
    assert "friend@example.com" not in roles(engine, site.id)
    assert friend.get(f"{base}/sites/{site.id}/overview", timeout=10).status_code == 403


def test_bad_grants_are_a_400_naming_the_field_and_change_nothing(base, engine, shop):
    site = shop["first"]
    owner = log_in(base, "owner@example.com")
    page = owner.get(f"{base}/sites/{site.id}/settings", timeout=10)
    before = roles(engine, site.id)
    for data, field in (
        ({"email": "nobody@example.com", "role": "viewer"}, "email: no user nobody@example.com"),
        ({"email": "not an address", "role": "viewer"}, "email:"),
        ({"email": "viewer@example.com", "role": "admin"}, "role: one of viewer, owner"),
        # The last owner can be neither demoted nor removed: someone must keep the keys.
        (
            {"email": "owner@example.com", "role": "viewer"},
            "role: the last owner of this site stays",
        ),
    ):
        refused = owner.post(
            f"{base}/sites/{site.id}/settings/users",
            data={**data, "csrf_token": csrf(page)},
            timeout=10,
        )
        assert refused.status_code == 400, data
        assert field in refused.text, data
    last = owner.post(
        f"{base}/sites/{site.id}/settings/users/revoke",
        data={"email": "owner@example.com", "csrf_token": csrf(page)},
        timeout=10,
    )
    assert last.status_code == 400 and "last owner of this site cannot be removed" in last.text
    assert roles(engine, site.id) == before


def test_only_owners_with_a_csrf_token_manage_users(base, engine, shop):
    site, other = shop["first"], shop["second"]
    users.create_user(engine, "friend@example.com", PASSWORD)
    before = roles(engine, site.id)
    # A viewer: 403, even with a valid token.
    viewer = log_in(base, "viewer@example.com")
    token = csrf(viewer.get(f"{base}/sites", timeout=10))
    for path, data in (
        ("settings/users", {"email": "friend@example.com", "role": "owner"}),
        ("settings/users/revoke", {"email": "owner@example.com"}),
    ):
        refused = viewer.post(
            f"{base}/sites/{site.id}/{path}", data={**data, "csrf_token": token}, timeout=10
        )
        assert refused.status_code == 403
    # An owner without the form's token, or with a forged one: refused.
    owner = log_in(base, "owner@example.com")
    for extra in ({}, {"csrf_token": "forged"}):
        refused = owner.post(
            f"{base}/sites/{site.id}/settings/users",
            data={"email": "friend@example.com", "role": "viewer", **extra},
            timeout=10,
        )
        assert refused.status_code == 400 and "This form was refused" in refused.text
    # An owner of one site cannot grant another site.
    token = csrf(owner.get(f"{base}/sites/{site.id}/settings", timeout=10))
    refused = owner.post(
        f"{base}/sites/{other.id}/settings/users",
        data={"email": "friend@example.com", "role": "owner", "csrf_token": token},
        timeout=10,
    )
    assert refused.status_code == 403
    assert roles(engine, site.id) == before
    assert roles(engine, other.id) == {}
