"""CPU per request of one web process's Python, without a server or a network in the way.

Calls the real WSGI app (``create_app``, real Redis with ``appendfsync everysec``, real
SQLite) directly, one request after another, for a beacon, a session registration, a tag
GET and a tag 304, and prints microseconds of process CPU per request. With ``--profile
KIND`` it prints the top of a cProfile of that kind instead: the place to look before
optimising (``bench/ratios.py`` gives the figures under load).

With ``--threads N`` the requests of each kind are sent by N threads at once, as granian's
blocking threads would: the process's CPU then includes the group committer's threads and
the cost of waking the waiting requests, which one request at a time never shows.

Usage: ``.venv/bin/python bench/profile_web.py [--requests 3000] [--threads 32]
[--profile beacon]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from firsttag import logs  # noqa: E402
from firsttag.config import Config  # noqa: E402
from firsttag.ops.embedded_redis import EmbeddedRedis  # noqa: E402
from firsttag.sites import create_site  # noqa: E402
from firsttag.web.app import create_app  # noqa: E402


def environ(method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    """A WSGI environ as granian builds one."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
    }
    if body:
        env["CONTENT_TYPE"] = "text/plain"
    for name, value in headers.items():
        env["HTTP_" + name.upper()] = value
    return env


def call(app: Any, env: dict[str, Any]) -> int:
    """Run one request through ``app``; its status code."""
    status: list[str] = []
    out = app(env, lambda s, h, e=None: status.append(s))
    b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return int(status[0][:3])


def _switches() -> int:
    """Context switches of this process so far (every thread, voluntary or not).

    Under many threads each contended hand-over of the GIL is one, so this counts what
    CPU time alone hides: a request that sleeps and wakes more often costs the machine
    more than its own CPU shows.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def run_all(app: Any, envs: list[dict[str, Any]], threads: int) -> None:
    """Send every environ in ``envs`` through ``app`` from ``threads`` threads at once."""
    if threads <= 1:
        for env in envs:
            call(app, env)
        return
    work = iter(envs)
    take = threading.Lock()

    def worker() -> None:
        while True:
            with take:
                env = next(work, None)
            if env is None:
                return
            call(app, env)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def main() -> None:
    """Measure (or profile) each kind of request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", choices=("beacon", "session", "tag", "tag304"))
    parser.add_argument(
        "--only", choices=("beacon", "session", "tag", "tag304"), help="measure one kind"
    )
    parser.add_argument("--log", action="store_true", help="JSON access log on (to /dev/null)")
    parser.add_argument(
        "--threads", type=int, default=1, help="requests sent by this many threads at once"
    )
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ft-prof-"))
    redis = EmbeddedRedis(work / "redis", appendfsync="everysec")
    url = redis.start()
    try:
        config = Config(
            data_dir=work,
            database_url=f"sqlite:///{work / 'ft.db'}",
            redis_url=url,
            secret_key="profile-secret",  # noqa: S106 (a throwaway server)
            max_backlog=10_000_000,
            rate_per_ip=10**9,
            rate_browser=10**9,
        )
        if opts.log:
            logs.configure("INFO")
            logging.getLogger().handlers[0].stream = open("/dev/null", "w")  # noqa: SIM115
        app = create_app(config)
        site = create_site(app.extensions["firsttag"].engine, "Bench", ["https://shop.example"])[0]
        key, site_id = site.site_key, site.id
        counter = iter(range(10**9))

        def beacon() -> dict[str, Any]:
            body = json.dumps(
                {
                    "siteKey": key,
                    "id": f"b{next(counter):020d}",
                    "name": "Bench",
                    "visitorId": "v" * 20,
                    "value": 1999,
                    "currency": "EUR",
                }
            ).encode()
            return environ("POST", "/api/v1/beacon", body)

        def session() -> dict[str, Any]:
            body = json.dumps(
                {
                    "siteKey": key,
                    "sessionId": f"s{next(counter):020d}",
                    "visitorId": "v" * 20,
                    "url": "https://shop.example/landing?utm_source=x&gclid=abc",
                    "referrer": "https://www.google.com/",
                }
            ).encode()
            return environ("POST", "/api/v1/sessions", body, ORIGIN="https://shop.example")

        status: list[Any] = []
        app(environ("GET", f"/t/{site_id}.js"), lambda s, h, e=None: status.append(h))
        etag = dict(status[0])["ETag"]
        kinds: dict[str, tuple[Callable[[], dict[str, Any]], int]] = {
            "beacon": (beacon, 202),
            "session": (session, 200),
            "tag": (lambda: environ("GET", f"/t/{site_id}.js"), 200),
            "tag304": (lambda: environ("GET", f"/t/{site_id}.js", IF_NONE_MATCH=etag), 304),
        }
        for name, (make, expected) in kinds.items():
            if name != (opts.profile or opts.only or name):
                continue
            for _ in range(200):  # warm caches, scripts, pools
                assert call(app, make()) == expected, name
            envs = [make() for _ in range(opts.requests)]
            profiler = cProfile.Profile() if opts.profile else None
            started = time.process_time()
            wall = time.perf_counter()
            switches = _switches()
            if profiler:
                profiler.enable()
            run_all(app, envs, opts.threads)
            if profiler:
                profiler.disable()
            cpu = time.process_time() - started
            wall = time.perf_counter() - wall
            switches = _switches() - switches
            print(
                f"{name:8} {cpu / opts.requests * 1e6:7.0f} µs CPU per request, "
                f"{switches / opts.requests:.1f} context switches per request "
                f"({opts.requests / wall:,.0f} requests/s, {opts.threads} threads)"
            )
            if profiler:
                stats = pstats.Stats(profiler).sort_stats("tottime")
                stats.print_stats(35)
                stats.sort_stats("cumulative").print_stats(45)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
