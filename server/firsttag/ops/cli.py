"""The ``firsttag`` command line."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

import click

from firsttag import logs, store
from firsttag.config import Config


def _owner_only_files() -> None:
    # Redis has no umask option and SQLite, RQ and Redis create files long after start
    # (WAL files, AOF rewrites): a process umask covers all of them and the children
    # that inherit it. Only the long-running commands set it; `firsttag build` writes
    # files meant for a web server to read.
    os.umask(0o077)


def _config(data_dir: str | None) -> Config:
    if data_dir:
        os.environ["FIRSTTAG_DATA_DIR"] = data_dir
    return Config.from_env(data_dir)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default: $FIRSTTAG_DATA_DIR or ./firsttag-data).",
)


@click.group()
def main() -> None:
    """firsttag: a self-hosted, first-party conversion-tracking tag server."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(0, 64),
    help="RQ worker processes (0: web only, workers run elsewhere).",
)
@click.option(
    "--web-processes", default=2, show_default=True, type=int, help="Web server processes."
)
@click.option(
    "--public-url",
    default=None,
    help="The URL visitors reach this server at, printed into tags and pages "
    "(default: $FIRSTTAG_PUBLIC_URL, else http://HOST:PORT).",
)
@data_dir_option
def serve(
    host: str,
    port: int,
    workers: int,
    web_processes: int,
    public_url: str | None,
    data_dir: str | None,
) -> None:
    """Run Redis (unless FIRSTTAG_REDIS_URL is set), RQ workers and the web server."""
    from dataclasses import replace

    from firsttag.config import listen_url
    from firsttag.config import public_url as checked_url
    from firsttag.ops.supervisor import serve as run

    _owner_only_files()
    config = _config(data_dir)
    given = public_url or os.environ.get("FIRSTTAG_PUBLIC_URL")
    config = replace(config, public_url=checked_url(given or listen_url(host, port)))
    if not given and host in ("0.0.0.0", "::"):  # noqa: S104 -- the check, not a bind
        click.echo(
            f"firsttag: warning: tags will point at {config.public_url}; "
            "set --public-url to the address visitors reach",
            err=True,
        )
    sys.exit(run(config, host, port, workers, web_processes, echo=click.echo))


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@data_dir_option
def worker(burst: bool, data_dir: str | None) -> None:
    """Run one RQ worker that drains events into the store (needs FIRSTTAG_REDIS_URL)."""
    from redis import Redis

    from firsttag.events.drain import DrainingWorker

    _owner_only_files()
    config = _config(data_dir)
    if not config.redis_url:
        raise click.UsageError("FIRSTTAG_REDIS_URL is not set")
    logs.configure()
    private_metrics = _worker_metrics(config)
    store.connect(config.database_url).dispose()
    connection = Redis.from_url(config.redis_url)
    try:
        DrainingWorker([config.queue_name], connection=connection).work(
            burst=burst, logging_level=logs.level_from_env()
        )
    finally:
        if private_metrics:
            shutil.rmtree(private_metrics, ignore_errors=True)


def _worker_metrics(config: Config) -> str | None:
    """Count in the host's metrics directory, or a private one; serve it if asked.

    Under ``serve`` (or a systemd unit that sets ``PROMETHEUS_MULTIPROC_DIR``) the web's
    ``/metrics`` on this host sums the worker's files. Otherwise the counts of the worker
    and its work-horses go to a private directory (returned, to be removed on exit),
    served on ``FIRSTTAG_WORKER_METRICS_PORT`` when that is set. Must run before
    anything imports ``prometheus_client``.
    """
    private = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        private = tempfile.mkdtemp(prefix="metrics-worker-", dir=config.data_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = private
    port = os.environ.get("FIRSTTAG_WORKER_METRICS_PORT")
    if port:
        from prometheus_client import start_http_server
        from redis import Redis

        from firsttag import metrics
        from firsttag.events.readiness import snapshot

        redis = Redis.from_url(config.redis_url or "", socket_timeout=5)
        gauges = metrics.PipelineCollector(lambda: snapshot(redis))
        host = os.environ.get("FIRSTTAG_WORKER_METRICS_HOST") or "127.0.0.1"
        start_http_server(int(port), host, registry=metrics.registry([gauges]))
    return private


@main.command()
@data_dir_option
def migrate(data_dir: str | None) -> None:
    """Bring the database schema to this release's head (every process also does on start)."""
    from sqlalchemy import make_url

    config = _config(data_dir)
    engine = store.connect(config.database_url, migrate=False)
    where = make_url(config.database_url).render_as_string(hide_password=True)
    before, after = store.upgrade(engine)
    engine.dispose()
    if before == after:
        click.echo(f"{where}: at {after} (head {store.head_revision()}), nothing to do")
    else:
        click.echo(f"{where}: upgraded {before or 'nothing'} -> {after}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--processes", default=2, show_default=True, type=int, help="Web processes.")
@data_dir_option
def web(host: str, port: int, processes: int, data_dir: str | None) -> None:
    """Run the web tier only, for a host of its own (needs a shared Redis and database).

    Needs FIRSTTAG_REDIS_URL, FIRSTTAG_DATABASE_URL, FIRSTTAG_SECRET_KEY (the same on
    every host) and FIRSTTAG_PUBLIC_URL. Workers run elsewhere (`firsttag worker`).
    """
    from firsttag.ops.supervisor import serve as run

    missing = [
        name
        for name in ("FIRSTTAG_REDIS_URL", "FIRSTTAG_DATABASE_URL", "FIRSTTAG_SECRET_KEY")
        if not os.environ.get(name)
    ]
    if missing:
        raise click.UsageError(f"{', '.join(missing)} must be set: the hosts share them")
    _owner_only_files()
    config = _config(data_dir)
    sys.exit(run(config, host, port, 0, processes, echo=click.echo))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@data_dir_option
def status(as_json: bool, data_dir: str | None) -> None:
    """Workers, backlog, lag, dead letters, schema and the last error, on one screen."""
    from redis import Redis

    from firsttag.ops.status import gather, render

    config = _config(data_dir)
    if not config.redis_url:
        raise click.UsageError("FIRSTTAG_REDIS_URL is not set")
    redis = Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
    engine = store.connect(config.database_url, migrate=False)
    report = gather(redis, engine, config)
    engine.dispose()
    click.echo(json.dumps(report, indent=2) if as_json else render(report))
    sys.exit(0 if report["ok"] else 1)


@main.command()
@click.option("--requeue", is_flag=True, help="Replay the given dead letters (all if none given).")
@click.option("--drop", is_flag=True, help="Remove the given dead letters for good.")
@click.option("--json", "as_json", is_flag=True, help="Print the letters as JSON.")
@click.argument("ids", nargs=-1)
@data_dir_option
def failed(
    requeue: bool, drop: bool, as_json: bool, ids: tuple[str, ...], data_dir: str | None
) -> None:
    """List events the worker could not store (dead letters); replay or drop them."""
    from redis import Redis

    from firsttag.events import deadletters
    from firsttag.events.buffer import BacklogFull, EventBuffer

    config = _config(data_dir)
    if not config.redis_url:
        raise click.UsageError("FIRSTTAG_REDIS_URL is not set")
    if requeue and drop:
        raise click.UsageError("--requeue and --drop exclude each other")
    if drop and not ids:
        raise click.UsageError("--drop needs the IDs of the letters to remove")
    if ids and not (requeue or drop):
        raise click.UsageError("IDs go with --requeue or --drop")
    redis = Redis.from_url(config.redis_url)
    deadletters.adopt_legacy(redis, store.utcnow())
    if drop:
        click.echo(f"dropped {deadletters.drop(redis, list(ids))} of {len(ids)}")
        return
    if requeue:
        buffer = EventBuffer(
            redis,
            config.queue_name,
            config.max_backlog,
            config.max_site_backlog_bytes,
            config.max_backlog_bytes,
        )
        try:
            done = deadletters.requeue(redis, buffer, list(ids) or None)
        except BacklogFull:
            raise click.ClickException("the backlog is full; requeue again later") from None
        click.echo(f"requeued {len(done)}" + (f" of {len(ids)}" if ids else ""))
        return
    found = deadletters.letters(redis)
    if as_json:
        click.echo(json.dumps([letter.public_dict() for letter in found], indent=2))
        return
    summary = deadletters.summary(redis)
    click.echo(
        f"{summary['count']} dead letters" + (f", oldest {summary['oldest']}" if found else "")
    )
    for reason, n in summary["reasons"].items():
        click.echo(f"  {n:>6}  {reason}")
    for letter in found:
        click.echo(
            f"{letter.id}  {letter.failed_at}  site={letter.site or '?'}  "
            f"kind={letter.kind or '?'}  {letter.reason}: {letter.error}"
        )


@main.command("build")
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory."
)
@click.option("--site", "site_ids", multiple=True, help="Only this site (repeatable).")
@click.option(
    "--public-url",
    "--base-url",
    "base_url",
    default=None,
    help="Public URL of this server (default: $FIRSTTAG_PUBLIC_URL or http://127.0.0.1:8000).",
)
@click.option(
    "--budget", type=int, default=None, help="Largest gzip -9 size a tag may have (default 1500)."
)
@data_dir_option
def build_command(
    out: str,
    site_ids: tuple[str, ...],
    base_url: str | None,
    budget: int | None,
    data_dir: str | None,
) -> None:
    """Write every site's tag (hashed, .gz, .br), GTM files and manifest.json to --out."""
    from pathlib import Path

    from firsttag_build import build

    from firsttag.config import public_url as checked_url
    from firsttag.sites import list_sites
    from firsttag.tag.render import TAG_BUDGET_GZIP

    config = _config(data_dir)
    sites = list_sites(store.connect(config.database_url))
    if site_ids:
        unknown = set(site_ids) - {s.id for s in sites}
        if unknown:
            raise click.BadParameter(f"no such site: {', '.join(sorted(unknown))}")
        sites = [s for s in sites if s.id in site_ids]
    base = checked_url(base_url) if base_url else config.public_url

    if not sites:
        raise click.UsageError("no sites to build: create one with `firsttag sites create`")
    if sys.stderr.isatty() and len(sites) > 1:  # progress only where a person watches
        with click.progressbar(length=len(sites), label="building", file=sys.stderr) as bar:
            results = build(sites, Path(out), base, on_built=lambda _: bar.update(1))
    else:
        results = build(sites, Path(out), base)
    for r in results:
        click.echo(f"{r.site_id}  raw {r.raw:,} B  gzip {r.gzip:,} B  brotli {r.brotli:,} B")
    limit = budget or TAG_BUDGET_GZIP
    over = [r for r in results if r.gzip > limit]
    if over:
        names = ", ".join(f"{r.site_id} ({r.gzip:,} B)" for r in over)
        click.echo(f"error: over the {limit:,} B gzip budget: {names}", err=True)
        sys.exit(1)


@main.command()
def apidocs() -> None:
    """Print the payload field reference (Markdown) generated from the schemas."""
    from firsttag.apispec.markdown import render

    click.echo(render(), nl=False)


@main.group()
def sites() -> None:
    """Create and list sites."""


def settings_options(command: Any) -> Any:
    """The per-site settings shared by ``sites create`` and ``sites update``."""
    from firsttag.money import MAX_MINOR_UNITS
    from firsttag.sites import DEFAULT_MAX_BROWSER_VALUE, MAX_RATE_PER_MINUTE, ORDER_STATUSES

    command = click.option(
        "--counting-status",
        "counting_statuses",
        multiple=True,
        type=click.Choice(ORDER_STATUSES),
        help="An order status that counts as a conversion (repeatable; default: completed).",
    )(command)
    command = click.option(
        "--global-name", default=None, help="The tag's global instead of window.firsttag."
    )(command)
    command = click.option(
        "--tag-path", default=None, help="A second path for the tag, e.g. /assets/app.js."
    )(command)
    command = click.option(
        "--consent-required/--no-consent-required",
        default=None,
        help="Write nothing to storage or cookies before firsttag.consent(true).",
    )(command)
    command = click.option(
        "--first-party-path",
        default=None,
        help="First-party mode: the path of the site's own origins proxied to this server, "
        "e.g. /ft; the tag talks to it and the server keeps the IDs in an HttpOnly cookie "
        "of the site ('' turns it off).",
    )(command)
    command = click.option(
        "--track-history/--no-track-history",
        default=None,
        help="Single-page apps: call firsttag.page() on history.pushState and popstate.",
    )(command)
    command = click.option(
        "--count-browser-revenue/--no-count-browser-revenue",
        default=None,
        help="Count values reported by browsers (firsttag.convert) as revenue (default: no).",
    )(command)
    command = click.option(
        "--max-browser-value",
        type=click.IntRange(0, MAX_MINOR_UNITS),
        default=None,
        help=f"Largest value a browser conversion may report, in minor units "
        f"(default {DEFAULT_MAX_BROWSER_VALUE:,}).",
    )(command)
    for name, what in (
        ("browser", "Browser requests (sessions, beacons)"),
        ("server", "Server events (secret key; a batch counts its items)"),
        ("reads", "Analytics and conversion reads"),
    ):
        command = click.option(
            f"--{name}-rate",
            f"{name}_rate",
            type=click.IntRange(1, MAX_RATE_PER_MINUTE),
            default=None,
            help=f"{what} per minute for this site (default: $FIRSTTAG_RATE_{name.upper()}).",
        )(command)
    command = click.option(
        "--time-zone",
        default=None,
        help="IANA time zone the dashboard counts days in, e.g. Europe/Paris (default UTC).",
    )(command)
    return click.option(
        "--attribution-days",
        type=click.IntRange(1, 365),
        default=None,
        help="Attribution window in days (default 7).",
    )(command)


def _settings_changes(options: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~firsttag.sites.Settings` fields that :func:`settings_options` set.

    An option that was not given maps to None, which leaves the setting as it is.
    """
    return {
        "attribution_window_days": options["attribution_days"],
        "counting_statuses": tuple(options["counting_statuses"]) or None,
        "global_name": options["global_name"],
        "tag_path": options["tag_path"],
        "consent_required": options["consent_required"],
        "first_party_path": options["first_party_path"],
        "track_history": options["track_history"],
        "count_browser_revenue": options["count_browser_revenue"],
        "max_browser_value": options["max_browser_value"],
        "browser_rate_per_minute": options["browser_rate"],
        "server_rate_per_minute": options["server_rate"],
        "reads_rate_per_minute": options["reads_rate"],
        "time_zone": options["time_zone"],
    }


@sites.command("create")
@click.option("--name", required=True, help="A name for the site.")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    required=True,
    help="An origin allowed to send browser events, e.g. https://shop.example (repeatable).",
)
@click.option(
    "--public-url",
    "--base-url",
    "base_url",
    default=None,
    help="Public URL of this server, for the printed tag (default: $FIRSTTAG_PUBLIC_URL "
    "or http://127.0.0.1:8000).",
)
@settings_options
@data_dir_option
def sites_create(
    name: str,
    origins: tuple[str, ...],
    base_url: str | None,
    data_dir: str | None,
    **options: Any,
) -> None:
    """Create a site and print its keys once, as JSON. The secret key is not shown again."""
    from firsttag.config import public_url as checked_url
    from firsttag.sites import Settings, create_site
    from firsttag.tag.install import install_link
    from firsttag.tag.render import snippet

    config = _config(data_dir)
    given = {k: v for k, v in _settings_changes(options).items() if v is not None}
    settings = Settings(**given)
    try:
        site, secret_key = create_site(
            store.connect(config.database_url), name, list(origins), settings
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    base = checked_url(base_url) if base_url else config.public_url
    out = {
        **site.public_dict(),
        "secretKey": secret_key,
        "tag": snippet(site, base),
        "installUrl": install_link(site, base, config.secret_key),
    }
    click.echo(json.dumps(out, indent=2))


@sites.command("update")
@click.argument("site_id")
@settings_options
@data_dir_option
def sites_update(site_id: str, data_dir: str | None, **options: Any) -> None:
    """Change a site's settings; prints the site (running servers see it within 10 s)."""
    from firsttag.analytics import rollups
    from firsttag.sites import update_settings

    config = _config(data_dir)
    engine = store.connect(config.database_url)
    try:
        site = update_settings(engine, site_id, **_settings_changes(options))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    with engine.begin() as conn:  # a new time zone: the dashboard's days are recounted
        rollups.sync_zone(conn, site.id)
    click.echo(json.dumps(site.public_dict(), indent=2))


@sites.command("list")
@data_dir_option
def sites_list(data_dir: str | None) -> None:
    """List sites as JSON (no secrets)."""
    from firsttag.sites import list_sites

    config = _config(data_dir)
    click.echo(
        json.dumps(
            [s.public_dict() for s in list_sites(store.connect(config.database_url))], indent=2
        )
    )


@main.group("users")
def users_group() -> None:
    """Dashboard users: create, list, grant and revoke sites, reset passwords."""


def _password() -> str:
    # Prompted (twice, hidden), never an option: command lines end up in shell history
    # and in every process listing.
    from firsttag.users import check_password

    while True:
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        try:
            return check_password(password)
        except ValueError as exc:
            click.echo(f"Error: {exc}", err=True)
            if not sys.stdin.isatty():
                raise click.exceptions.Exit(2) from None


role_option = click.option(
    "--role",
    type=click.Choice(["owner", "viewer"]),
    default="viewer",
    show_default=True,
    help="owner: settings, keys and reports; viewer: reports only.",
)


@users_group.command("create")
@click.option("--email", required=True, help="The user's email address (their login).")
@click.option("--site", "site_id", default=None, help="Give the user this site at once.")
@role_option
@data_dir_option
def users_create(email: str, site_id: str | None, role: str, data_dir: str | None) -> None:
    """Create a dashboard user; the password is prompted for."""
    from firsttag import users

    engine = store.connect(_config(data_dir).database_url)
    try:
        email = users.normalise_email(email)
        if users.find_user(engine, email):
            raise ValueError(f"a user {email} exists already")
        if site_id and not _site_exists(engine, site_id):
            raise ValueError(f"no site {site_id}")
        user = users.create_user(engine, email, _password())
        if site_id:
            users.grant(engine, user.email, site_id, role)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    grants = f" ({role} of {site_id})" if site_id else ""
    click.echo(f"created {user.email}{grants}")


def _site_exists(engine: Any, site_id: str) -> bool:
    from firsttag.sites import get_site

    return get_site(engine, site_id) is not None


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
def users_list(as_json: bool, data_dir: str | None) -> None:
    """List users and the sites each may see."""
    from firsttag import users

    found = users.list_users(store.connect(_config(data_dir).database_url))
    if as_json:
        out = [{"email": u.email, "createdAt": u.created_at, "sites": g} for u, g in found]
        click.echo(json.dumps(out, indent=2))
        return
    for user, grants in found:
        sites = ", ".join(f"{s} ({r})" for s, r in grants.items()) or "no sites"
        click.echo(f"{user.email}\t{sites}")


@users_group.command("grant")
@click.option("--email", required=True)
@click.option("--site", "site_id", required=True)
@role_option
@data_dir_option
def users_grant(email: str, site_id: str, role: str, data_dir: str | None) -> None:
    """Let a user see a site as owner or viewer (replaces the role they had there)."""
    from firsttag import users

    try:
        users.grant(store.connect(_config(data_dir).database_url), email, site_id, role)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"{email.strip().lower()} is {role} of {site_id}")


@users_group.command("revoke")
@click.option("--email", required=True)
@click.option("--site", "site_id", required=True)
@data_dir_option
def users_revoke(email: str, site_id: str, data_dir: str | None) -> None:
    """Take a site away from a user (their next page load is refused)."""
    from firsttag import users

    try:
        done = users.revoke(store.connect(_config(data_dir).database_url), email, site_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"revoked {site_id} from {email}" if done else f"{email} had no grant on {site_id}")


@users_group.command("reset-password")
@click.option("--email", required=True)
@data_dir_option
def users_reset_password(email: str, data_dir: str | None) -> None:
    """Set a new password (prompted); every session of the user ends."""
    from firsttag import users

    engine = store.connect(_config(data_dir).database_url)
    if users.find_user(engine, email) is None:
        raise click.BadParameter(f"no user {email.strip().lower()}")
    try:
        users.set_password(engine, email, _password())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"password of {email.strip().lower()} changed; their sessions have ended")


if __name__ == "__main__":
    main()
