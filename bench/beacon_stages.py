"""Where a beacon's CPU goes under granian, stage by stage, beside the bare Flask ceiling.

``bench/ratios.py`` says how far the beacon is from its goal (0.6 × the bare Flask POST);
this script says why, by serving the same wrk load (unique IDs, ``-t2 -c64``) from apps
that each add one stage of the real beacon path, all under granian with ``firsttag
serve``'s processes and threads, in one run on the same cores:

1. **wsgi floor**: a plain WSGI callable that reads the body and answers 202 (no Flask):
   what granian itself costs per request;
2. **+ validation**: firsttag's own body bounds, model, site and event
   (:func:`firsttag.bounds.loads`, :func:`firsttag.schemas.parse`,
   :func:`firsttag.web.api.beacon_event`, :func:`firsttag.wire.encode`);
3. **+ Redis admit**: and the one Redis call that charges the limits and queues the event
   (:meth:`firsttag.events.buffer.EventBuffer.admit`, group commit, a real Redis with
   ``appendfsync always``; nobody drains, so no worker shares the cores);
4. **firsttag serve**: the real thing, worker included;

and the ceiling, **bare Flask** (``bench/ratios.py``'s). Each row: requests/s, its ratio
to bare Flask, and CPU milliseconds per request of the web processes, of Redis and of the
worker (from ``/proc``), the figure a noisy shared machine cannot blur much.

Usage: ``.venv/bin/python bench/beacon_stages.py [--seconds 6] [--rounds 2]`` (about two
minutes). Needs ``wrk`` on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from firsttag.config import Config  # noqa: E402
from firsttag.ops.embedded_redis import EmbeddedRedis  # noqa: E402
from firsttag.ops.supervisor import blocking_threads  # noqa: E402
from ratios import (  # noqa: E402
    BEACON_LUA,
    Run,
    Server,
    _popen,
    clean_env,
    create_site,
    descendants,
    free_port,
    granian_wsgi,
    http_up,
    platform_line,
    start_bare,
    start_firsttag,
    wait_for,
    wrk,
)

STAGE_APP = '''
"""One stage of the beacon path as a plain WSGI app (bench/beacon_stages.py)."""
import os

from firsttag import bounds, schemas, store, wire
from firsttag.events.buffer import EventBuffer
from firsttag.limiter import Limit, client_subject
from firsttag.sites import SiteDirectory
from firsttag.web.api import beacon_event
from redis import Redis

STAGE = os.environ["STAGE"]
ANSWER = b'{"accepted":true}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]
if STAGE != "floor":
    SITES = SiteDirectory(store.connect(os.environ["FIRSTTAG_DATABASE_URL"]))
if STAGE == "admit":
    REDIS = Redis.from_url(os.environ["FIRSTTAG_REDIS_URL"])
    BUFFER = EventBuffer(REDIS, "bench")


def app(environ, start_response):
    raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if STAGE != "floor":
        body = schemas.parse(schemas.BrowserConversion, bounds.loads(raw))
        site = SITES.by_site_key(body.siteKey)
        event = beacon_event(site, body, body.sessionId)
        if STAGE == "validate":
            wire.encode(event)
        else:
            limits = [
                Limit("ip", client_subject(environ.get("REMOTE_ADDR")), 10**8),
                Limit("browser", site.id, 10**8),
            ]
            assert BUFFER.admit(limits, event).allowed
    start_response("202 ACCEPTED", HEADERS)
    return [ANSWER]
'''


def start_stage(
    work: Path, stage: str, env: dict[str, str], processes: int, threads: int
) -> Server:
    """The stage app under granian, as ``firsttag serve`` runs its web processes."""
    (work / "stage_app.py").write_text(STAGE_APP)
    port = free_port()
    argv = granian_wsgi("stage_app:app", port, processes, threads)
    server_env = clean_env(**env, STAGE=stage)
    server_env["PYTHONPATH"] = f"{work}:{server_env['PYTHONPATH']}"
    process = _popen(argv, server_env, work / f"stage-{stage}.log", cwd=work)
    server = Server(stage, process, f"http://127.0.0.1:{port}")
    server.roles = {"web": lambda: descendants(process.pid)}
    wait_for(http_up(server.base + "/"), 60, f"the {stage} app")
    return server


def main() -> None:
    """Run every stage and the ceiling for ``--rounds`` alternating rounds; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="per wrk run (default 6)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--web-processes", type=int, default=2, help="as firsttag serve")
    parser.add_argument("--web-threads", type=int, default=blocking_threads(Config.from_env()))
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="firsttag-stages-"))
    servers: list[Server] = []
    redis: EmbeddedRedis | None = None
    started = time.monotonic()
    procs, threads = opts.web_processes, opts.web_threads
    try:
        full = start_firsttag(work / "firsttag", "always", procs, threads, {})
        servers.append(full)
        site = create_site(clean_env(), work / "firsttag")
        # The stage apps read the same sites table; their Redis is a second, idle one.
        redis = EmbeddedRedis(work / "redis", appendfsync="always")
        stage_env = {
            "FIRSTTAG_DATABASE_URL": f"sqlite:///{work / 'firsttag' / 'firsttag.db'}",
            "FIRSTTAG_REDIS_URL": redis.start(),
        }
        (work / "tag.js").write_bytes(b"/* bench */")
        bare = start_bare(work, work / "tag.js", procs, threads)
        servers.append(bare)
        targets: list[tuple[str, Server]] = [("bare Flask (ceiling)", bare)]
        for stage in ("floor", "validate", "admit"):
            server = start_stage(work, stage, stage_env, procs, threads)
            if stage == "admit":
                server.roles["redis"] = lambda pid=redis.process.pid: [pid]
            servers.append(server)
            targets.append((stage, server))
        targets.append(("firsttag serve", full))
        script = work / "beacon.lua"
        script.write_text(
            BEACON_LUA.replace("SITE_KEY", site["siteKey"]).replace("VISITOR", "v" * 32)
        )
        results: dict[str, list[Run]] = {}
        for rnd in range(opts.rounds):
            print(f"== round {rnd + 1}/{opts.rounds}", flush=True)
            for name, server in targets:
                results.setdefault(name, []).append(
                    wrk(server, server.base + "/api/v1/beacon", opts.seconds, script, [f"{rnd}"])
                )
        report(results, opts, time.monotonic() - started)
    finally:
        for server in servers:
            server.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, list[Run]], opts: argparse.Namespace, elapsed: float) -> None:
    """One row per stage: req/s, ratio to bare Flask, CPU per request by role."""

    def med(name: str, value: str = "rps", role: str = "web") -> float:
        runs = results[name]
        if value == "rps":
            return statistics.median(r.rps for r in runs)
        return statistics.median(r.cpu_per_request_ms(role) for r in runs)

    ceiling = med("bare Flask (ceiling)")
    print()
    print(
        f"machine: {platform_line()}; wrk -t2 -c64 -d{opts.seconds}s, {opts.rounds} "
        f"alternating rounds, median; {opts.web_processes} web processes x "
        f"{opts.web_threads} threads everywhere; run took {elapsed:.0f} s"
    )
    print()
    print(
        "| `POST /api/v1/beacon` served by | req/s | ratio to bare Flask | CPU ms/request: "
        "web | redis | worker | non-2xx |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        print(
            f"| {name} | {med(name):,.0f} | {med(name) / ceiling:.2f} | "
            f"{med(name, 'cpu'):.3f} | {med(name, 'cpu', 'redis'):.3f} | "
            f"{med(name, 'cpu', 'worker'):.3f} | {sum(r.non2xx for r in runs)} |"
        )


if __name__ == "__main__":
    main()
