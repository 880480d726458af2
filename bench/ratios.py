"""Every speed figure of firsttag beside its ceiling, measured in one run on this machine.

Absolute requests/s say little on a shared machine; a ratio to a ceiling measured in the
same run, on the same cores, says whether firsttag or the machine changed. This script
starts, all on 127.0.0.1:

* **bare**: a Flask app that reads the body and answers 202 (POST) or returns the tag's
  bytes (GET), under granian with the same processes and threads as ``firsttag serve``;
* **firsttag**: ``firsttag serve`` (embedded Redis with ``appendfsync always`` unless
  ``--redis-fsync everysec``; ``both`` starts one of each), with its worker, on SQLite;
* **nginx**: the same tag bytes as a static file;

then loads them with wrk (``-t2 -c64``), alternating targets for ``--rounds`` rounds, and
prints each figure beside its ceiling and the ratio:

* ``POST /api/v1/beacon`` with unique IDs vs the bare POST (0 non-2xx expected);
* ``GET /t/<id>.js`` vs the bare GET of the same bytes, and vs nginx; and the 304 path;
* accepted → stored latency: a probe beacon every 100 ms during the beacon load, timed
  from its 2xx until its row is readable in the store (p50, p99); the backlog at the end
  of the load, and its largest sample in each half of the load (flat, or growing);
* CPU-seconds per request of the web processes (from ``/proc``), the steering figure on a
  noisy shared machine, and of the worker and Redis;
* the worker alone: ``--drain-events`` events pushed into a fresh buffer, drained by one
  ``firsttag worker`` into SQLite and, with ``--postgres URL`` (default
  ``$FIRSTTAG_TEST_DATABASE_URL``), into PostgreSQL.

Usage: ``.venv/bin/python bench/ratios.py`` (about 2.5 minutes with the defaults). Needs
``wrk`` and ``nginx`` on PATH (``apt-get install -y wrk nginx``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from firsttag.config import Config  # noqa: E402
from firsttag.events.buffer import BUFFER_KEY, EventBuffer  # noqa: E402
from firsttag.ops.embedded_redis import EmbeddedRedis  # noqa: E402
from firsttag.ops.supervisor import blocking_threads  # noqa: E402

PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

BEACON_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
function init(args) prefix = string.format("%s%02d", args[1], tid); counter = 0 end
request = function()
  counter = counter + 1
  local body = '{"siteKey":"SITE_KEY","id":"' .. prefix .. string.format("%012d", counter) ..
    '","name":"Bench","visitorId":"VISITOR","value":1999,"currency":"EUR"}'
  return wrk.format("POST", "/api/v1/beacon", {["Content-Type"] = "text/plain"}, body)
end
"""

BARE_APP = '''
"""The ceiling: Flask reading the body and answering 202, or returning the tag bytes."""
import os
from flask import Flask, Response, request

app = Flask(__name__)
TAG = open(os.environ["BARE_TAG_FILE"], "rb").read()


@app.post("/api/v1/beacon")
def beacon():
    request.get_data()
    return {"accepted": True}, 202


@app.get("/t/<name>.js")
def tag(name):
    return Response(TAG, content_type="application/javascript; charset=utf-8")
'''

NGINX_CONF = """
worker_processes {processes};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  types {{ application/javascript js; }}
  server {{
    listen 127.0.0.1:{port};
    root {prefix}/www;
    location / {{ add_header Cache-Control "public, max-age=300"; }}
  }}
}}
"""


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; exit naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def http_up(url: str) -> Callable[[], bool]:
    """A predicate: ``url`` answers at all."""

    def up() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return True

    return up


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` and of their reaped children, in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


@dataclass
class Server:
    """A started process tree, its URL and how to find its CPU time by role."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    roles: dict[str, Callable[[], list[int]]] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        """CPU-seconds so far per role (``web``, ``worker``, ``redis``)."""
        return {role: cpu_seconds(find()) for role, find in self.roles.items()}

    def stop(self) -> None:
        """SIGINT (firsttag stops its children in order), SIGKILL after 30 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _popen(argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _role_finder(top: int, marker: str) -> Callable[[], list[int]]:
    # The supervisor's direct child whose command line holds ``marker``, and its subtree.
    def find() -> list[int]:
        for pid in _children().get(top, []):
            with contextlib.suppress(OSError):
                if (
                    marker
                    in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                ):
                    return descendants(pid)
        return []

    return find


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FIRSTTAG_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
    env["PYTHONPATH"] = str(ROOT / "server")
    env.update(extra)
    return env


def start_firsttag(
    data: Path, fsync: str, web_processes: int, web_threads: int, extra: dict[str, str]
) -> Server:
    """``firsttag serve`` on SQLite with its embedded Redis fsyncing per ``fsync``."""
    port = free_port()
    env = clean_env(
        **extra,
        FIRSTTAG_WEB_THREADS=str(web_threads),
        FIRSTTAG_REDIS_FSYNC=fsync,
        # wrk is one client on one address: lift the limits, or it measures only them.
        FIRSTTAG_RATE_PER_IP="100000000",
        FIRSTTAG_RATE_BROWSER="100000000",
    )
    argv = [
        PYTHON,
        "-m",
        "firsttag.ops.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--web-processes",
        str(web_processes),
    ]
    process = _popen(argv, env, data.parent / f"{data.name}.log")
    server = Server(f"firsttag ({fsync})", process, f"http://127.0.0.1:{port}")
    server.roles = {
        "web": _role_finder(process.pid, "granian"),
        "worker": _role_finder(process.pid, "cli worker"),
        "redis": _role_finder(process.pid, "redis-server"),
    }
    wait_for(http_up(server.base + "/healthz"), 90, server.name)
    return server


def granian_wsgi(app: str, port: int, processes: int, threads: int) -> list[str]:
    """The command serving WSGI ``app`` (``module:name``) as ``firsttag serve`` serves its own."""
    return [
        PYTHON,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(processes),
        "--no-ws",
        "--blocking-threads",
        str(threads),
        "--log-level",
        "warning",
        app,
    ]


def start_bare(work: Path, tag_file: Path, web_processes: int, web_threads: int) -> Server:
    """The ceiling app under granian with ``firsttag serve``'s processes and threads."""
    (work / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    argv = granian_wsgi("bare_app:app", port, web_processes, web_threads)
    env = clean_env(BARE_TAG_FILE=str(tag_file), PYTHONPATH=str(work))
    process = _popen(argv, env, work / "bare.log", cwd=work)
    server = Server("bare Flask", process, f"http://127.0.0.1:{port}")
    server.roles = {"web": lambda: descendants(process.pid)}
    wait_for(http_up(server.base + "/t/x.js"), 60, server.name)
    return server


def start_nginx(work: Path, tag: bytes, name: str, web_processes: int) -> Server:
    """nginx serving ``tag`` at ``/t/<name>``."""
    prefix = work / "nginx"
    (prefix / "www" / "t").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    (prefix / "www" / "t" / name).write_bytes(tag)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, processes=web_processes))
    process = _popen(
        ["nginx", "-p", str(prefix), "-c", str(conf)], os.environ.copy(), work / "nginx.log"
    )
    server = Server("nginx", process, f"http://127.0.0.1:{port}")
    server.roles = {"web": lambda: descendants(process.pid)}
    wait_for(http_up(server.base + "/"), 30, "nginx")
    return server


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run against one target."""

    rps: float
    requests: int
    non2xx: int
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]

    def cpu_per_request_ms(self, role: str = "web") -> float:
        """Milliseconds of CPU per completed request spent by ``role``'s processes."""
        return 1000 * self.cpu.get(role, 0.0) / max(self.requests, 1)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    server: Server,
    url: str,
    seconds: float,
    script: Path | None = None,
    script_args: list[str] | None = None,
    headers: list[str] | None = None,
) -> Run:
    """Load ``url`` with wrk -t2 -c64 for ``seconds``; the figures and CPU by role."""
    argv = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    for header in headers or []:
        argv += ["-H", header]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    before = server.cpu()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    after = server.cpu()
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def pct(p: str) -> float:
        m = re.match(r"([\d.]+)(\w+)", latency.get(p, "0ms"))
        return _ms(m.group(1), m.group(2)) if m else 0.0

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        p50_ms=pct("50"),
        p99_ms=pct("99"),
        cpu={k: after[k] - before[k] for k in after},
    )


class Probes:
    """A beacon every 100 ms during the load; the time from its 2xx until it is stored.

    Each probe also samples the backlog (events waiting in Redis), so that a report can
    show whether it stayed flat during the load or grew.
    """

    def __init__(
        self, base: str, site_key: str, site_id: str, database_url: str, tag: str, redis: Redis
    ):
        self.base, self.site_key, self.site_id, self.tag = base, site_key, site_id, tag
        self.engine = create_engine(database_url)
        self.redis = redis
        #: Backlog samples of each load (each ``during`` block), in order.
        self.backlogs: list[list[int]] = []
        self.accepted: dict[str, float] = {}
        self.stored: dict[str, float] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._done = threading.Event()

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        """Send probes while the block runs; poll the store until they are in (≤ 60 s)."""
        self._stop.clear()
        self._done.clear()
        self.backlogs.append([])
        sender = threading.Thread(target=self._send, daemon=True)
        poller = threading.Thread(target=self._poll, daemon=True)
        sender.start()
        poller.start()
        try:
            yield
        finally:
            self._stop.set()
            sender.join()
            deadline = time.monotonic() + 60
            while len(self.stored) < len(self.accepted) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._done.set()
            poller.join()

    def _send(self) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.wait(0.1):
            n += 1
            probe_id = f"probe{self.tag}{n:08d}"
            body = {
                "siteKey": self.site_key,
                "id": probe_id,
                "name": "Probe",
                "visitorId": "p" * 32,
            }
            try:
                ok = session.post(
                    self.base + "/api/v1/beacon", data=json.dumps(body), timeout=10
                ).ok
            except requests.RequestException:
                ok = False
            if ok:
                self.accepted[f"browser:{probe_id}"] = time.monotonic()
            else:
                self.failed += 1
            with contextlib.suppress(Exception):
                self.backlogs[-1].append(int(self.redis.llen(BUFFER_KEY)))

    def _poll(self) -> None:
        query = text("SELECT dedup_key FROM conversions WHERE site_id = :site AND dedup_key = :key")
        while not self._done.is_set():
            waiting = [k for k in list(self.accepted) if k not in self.stored]
            if waiting:
                with self.engine.connect() as conn:
                    for key in waiting:
                        if conn.execute(query, {"site": self.site_id, "key": key}).first():
                            self.stored[key] = time.monotonic()
            time.sleep(0.05)

    def latencies(self) -> list[float]:
        """Seconds from 2xx to readable, per probe stored."""
        return sorted(self.stored[k] - self.accepted[k] for k in self.stored)


def _halves(samples: list[int]) -> str:
    """The largest backlog sample of each half of a load: "1,204 / 1,187" when flat."""
    if not samples:
        return "?"
    middle = len(samples) // 2
    return f"{max(samples[:middle] or [0]):,} / {max(samples[middle:]):,}"


def database_server_pids(database_url: str) -> list[int]:
    """The ``postgres`` processes of this machine when ``database_url`` is a local one."""
    if not database_url.startswith("postgresql") or not re.search(
        r"@(127\.0\.0\.1|localhost)[:/]", database_url
    ):
        return []
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of sorted ``values``; NaN when empty."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def create_site(env: dict[str, str], data: Path | None = None) -> dict[str, str]:
    """A new site via ``firsttag sites create``."""
    argv = [
        PYTHON,
        "-m",
        "firsttag.ops.cli",
        "sites",
        "create",
        "--name",
        "Bench",
        "--origin",
        "https://bench.example",
    ]
    if data is not None:
        argv += ["--data-dir", str(data)]
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def drain_alone(
    work: Path, database_url: str, events: int, label: str
) -> tuple[float, float, float | None]:
    """Events/s, and CPU-ms per event of one ``firsttag worker`` draining ``events`` and of
    the database server (PostgreSQL on this machine; None for SQLite, which is the worker).

    A fresh embedded Redis (fsync always) is filled with buffered beacons first, then one
    worker is started and timed until the buffer is empty and every row is in the store.
    The server's figure counts every ``postgres`` process here, so other clients of the
    same server during the run would count too.
    """
    data = work / f"drain-{label}"
    data.mkdir()
    redis_server = EmbeddedRedis(data / "redis")
    redis_url = redis_server.start()
    env = clean_env(
        FIRSTTAG_DATA_DIR=str(data),
        FIRSTTAG_DATABASE_URL=database_url,
        FIRSTTAG_REDIS_URL=redis_url,
    )
    worker = None
    try:
        site = create_site(env)
        redis = Redis.from_url(redis_url)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        run_tag = f"{label}{int(time.time())}"
        pipe = redis.pipeline(transaction=False)
        for i in range(events):
            event = {
                "kind": "conversion",
                "site": site["id"],
                "receivedAt": now,
                "v": 2,
                "data": {
                    "dedupKey": f"browser:d{run_tag}{i:09d}",
                    "kind": "sale",
                    "source": "browser",
                    "name": "Bench",
                    "visitorId": "v" * 32,
                    "value": 1999,
                    "currency": "EUR",
                    "occurredAt": now,
                },
            }
            pipe.rpush(BUFFER_KEY, json.dumps(event, separators=(",", ":")))
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        engine = create_engine(database_url)

        def stored() -> int:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT count(*) FROM conversions WHERE site_id = :s"), {"s": site["id"]}
                ).scalar_one()

        argv = [PYTHON, "-m", "firsttag.ops.cli", "worker"]
        worker = _popen(argv, env, work / f"drain-{label}.log")
        wait_for(
            lambda: redis.exists("rq:workers:firsttag") or redis.scard("rq:workers") > 0,
            60,
            "the worker",
        )
        local_server = bool(database_server_pids(database_url))
        cpu0 = cpu_seconds(descendants(worker.pid))
        # Per process: the drain's connections may be backends that start during the run.
        server0 = {pid: cpu_seconds([pid]) for pid in database_server_pids(database_url)}
        start = time.monotonic()
        EventBuffer(redis, "firsttag").kick()
        wait_for(lambda: redis.llen(BUFFER_KEY) == 0, 300, "the drain")
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(descendants(worker.pid)) - cpu0
        server_cpu = (
            sum(
                cpu_seconds([pid]) - server0.get(pid, 0.0)
                for pid in database_server_pids(database_url)
            )
            if local_server
            else None
        )
        count = stored()
        if count != events:
            print(f"   !! {label}: {count} rows stored for {events} events")
        engine.dispose()
        return (
            events / elapsed,
            1000 * cpu / events,
            None if server_cpu is None else 1000 * server_cpu / events,
        )
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        redis_server.stop()


# -- the run -----------------------------------------------------------------------------


def ratio_line(what: str, value: str, ceiling: str, ratio: float, goal: str = "") -> str:
    """One row of the summary table."""
    return f"| {what} | {value} | {ceiling} | **{ratio:.2f}** | {goal} |"


def main() -> None:
    """Run everything once and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="per wrk run (default 6)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--web-processes", type=int, default=2, help="as firsttag serve")
    parser.add_argument(
        "--web-threads",
        type=int,
        default=blocking_threads(Config.from_env()),
        help="WSGI threads per web process, of firsttag serve and the bare app alike "
        "(default: FIRSTTAG_WEB_THREADS's)",
    )
    parser.add_argument(
        "--firsttag-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra FIRSTTAG_* variable for firsttag serve (repeatable), e.g. to compare "
        "a setting",
    )
    parser.add_argument("--redis-fsync", choices=("always", "everysec", "both"), default="both")
    parser.add_argument("--drain-events", type=int, default=50_000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FIRSTTAG_TEST_DATABASE_URL", ""),
        help="PostgreSQL URL for the worker-alone drain (default $FIRSTTAG_TEST_DATABASE_URL; "
        "empty: skip)",
    )
    parser.add_argument("--skip", default="", help="comma list of: beacon, tag, drain")
    opts = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install -y {tool}")
    skip = set(filter(None, opts.skip.split(",")))
    fsyncs = ["always", "everysec"] if opts.redis_fsync == "both" else [opts.redis_fsync]
    work = Path(tempfile.mkdtemp(prefix="firsttag-ratios-"))
    servers: list[Server] = []
    started = time.monotonic()
    try:
        firsttags = []
        for fsync in fsyncs:
            data = work / f"firsttag-{fsync}"
            extra = dict(item.split("=", 1) for item in opts.firsttag_env)
            server = start_firsttag(data, fsync, opts.web_processes, opts.web_threads, extra)
            servers.append(server)
            site = create_site(clean_env(), data)
            firsttags.append((fsync, server, site, data))
        site = firsttags[0][2]
        tag_bytes = requests.get(f"{firsttags[0][1].base}/t/{site['id']}.js", timeout=5).content
        tag_file = work / "tag.js"
        tag_file.write_bytes(tag_bytes)
        bare = start_bare(work, tag_file, opts.web_processes, opts.web_threads)
        servers.append(bare)
        nginx = start_nginx(work, tag_bytes, f"{site['id']}.js", opts.web_processes)
        servers.append(nginx)
        script = work / "beacon.lua"
        script.write_text(BEACON_LUA.replace("VISITOR", "v" * 32))

        results: dict[str, list[Run]] = {}
        probes: dict[str, Probes] = {}
        backlog: dict[str, list[int]] = {}
        sec = opts.seconds
        for rnd in range(opts.rounds):
            print(f"== round {rnd + 1}/{opts.rounds}", flush=True)
            if "beacon" not in skip:
                results.setdefault("bare POST", []).append(
                    wrk(bare, bare.base, sec, script, [f"b{rnd}"])
                )
                for fsync, server, fsite, data in firsttags:
                    key = f"beacon {fsync}"
                    fscript = work / f"beacon-{fsync}.lua"
                    lua = BEACON_LUA.replace("SITE_KEY", fsite["siteKey"])
                    fscript.write_text(lua.replace("VISITOR", "v" * 32))
                    probe = probes.setdefault(
                        key,
                        Probes(
                            server.base,
                            fsite["siteKey"],
                            fsite["id"],
                            f"sqlite:///{data / 'firsttag.db'}",
                            fsync[0],
                            Redis.from_url(f"unix://{data / 'redis' / 'redis.sock'}"),
                        ),
                    )
                    probe.tag = f"{fsync[0]}{rnd}"
                    with probe.during():
                        results.setdefault(key, []).append(
                            wrk(server, server.base, sec, fscript, [f"r{rnd}"])
                        )
                        redis = Redis.from_url(f"unix://{data / 'redis' / 'redis.sock'}")
                        backlog.setdefault(key, []).append(int(redis.llen(BUFFER_KEY)))
                    wait_for(lambda r=redis: r.llen(BUFFER_KEY) == 0, 120, "the backlog to drain")
            if "tag" in skip:
                continue
            server, tsite = firsttags[0][1], firsttags[0][2]
            tag_url = f"/t/{tsite['id']}.js"
            results.setdefault("bare GET", []).append(wrk(bare, bare.base + tag_url, sec))
            results.setdefault("tag GET", []).append(wrk(server, server.base + tag_url, sec))
            etag = requests.get(server.base + tag_url, timeout=5).headers["ETag"]
            results.setdefault("tag 304", []).append(
                wrk(server, server.base + tag_url, sec, headers=[f"If-None-Match: {etag}"])
            )
            results.setdefault("nginx GET", []).append(wrk(nginx, nginx.base + tag_url, sec))
        for server in servers:
            server.stop()
        servers.clear()

        drains: dict[str, tuple[float, float, float | None]] = {}
        if "drain" not in skip:
            print("== worker alone", flush=True)
            drains["SQLite"] = drain_alone(
                work, f"sqlite:///{work / 'drain.db'}", opts.drain_events, "sqlite"
            )
            if opts.postgres:
                drains["PostgreSQL"] = drain_alone(work, opts.postgres, opts.drain_events, "pg")
        report(results, probes, backlog, drains, fsyncs, opts, time.monotonic() - started)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    results: dict[str, list[Run]],
    probes: dict[str, Probes],
    backlog: dict[str, list[int]],
    drains: dict[str, tuple[float, float, float | None]],
    fsyncs: list[str],
    opts: argparse.Namespace,
    elapsed: float,
) -> None:
    """Print the summary: each figure beside its ceiling, the ratio, and CPU per request."""

    def med(key: str) -> float:
        return statistics.median(r.rps for r in results[key])

    def rounds(key: str) -> str:
        return " / ".join(f"{r.rps:,.0f}" for r in results[key])

    def cpu(key: str, role: str = "web") -> float:
        return statistics.median(r.cpu_per_request_ms(role) for r in results[key])

    print()
    print(
        f"machine: {os.cpu_count()} cores, {platform_line()}; wrk -t2 -c64 -d{opts.seconds}s, "
        f"{opts.rounds} alternating rounds; median of rounds; {opts.web_processes} web "
        f"processes x {opts.web_threads} threads (firsttag and bare); run took {elapsed:.0f} s"
    )
    print()
    print("| what | firsttag | ceiling | ratio | goal |")
    print("|---|---|---|---|---|")
    beacons = [fsync for fsync in fsyncs if f"beacon {fsync}" in results]
    for fsync in beacons:
        key = f"beacon {fsync}"
        non2xx = sum(r.non2xx for r in results[key])
        print(
            ratio_line(
                f"`POST /api/v1/beacon`, appendfsync {fsync}",
                f"{med(key):,.0f} req/s ({rounds(key)}), {non2xx} non-2xx",
                f"bare POST {med('bare POST'):,.0f} req/s",
                med(key) / med("bare POST"),
                "≥ 0.6",
            )
        )
    if "tag GET" in results:
        print(
            ratio_line(
                "`GET /t/<id>.js`",
                f"{med('tag GET'):,.0f} req/s ({rounds('tag GET')})",
                f"bare GET {med('bare GET'):,.0f} req/s",
                med("tag GET") / med("bare GET"),
                "≥ 0.9",
            )
        )
        print(
            ratio_line(
                "`GET /t/<id>.js` vs the file",
                f"{med('tag GET'):,.0f} req/s",
                f"nginx {med('nginx GET'):,.0f} req/s",
                med("tag GET") / med("nginx GET"),
            )
        )
        print(
            ratio_line(
                "`GET /t/<id>.js`, If-None-Match → 304",
                f"{med('tag 304'):,.0f} req/s",
                f"bare GET {med('bare GET'):,.0f} req/s",
                med("tag 304") / med("bare GET"),
            )
        )
    print()
    print(
        "| accepted → stored (probe beacon every 100 ms during the load) | p50 | p99 | probes "
        "| backlog at end of each round | most waiting, 1st / 2nd half of each round |"
    )
    print("|---|---|---|---|---|---|")
    for fsync in beacons:
        key = f"beacon {fsync}"
        lat = probes[key].latencies()
        lost = len(probes[key].accepted) - len(lat)
        print(
            f"| appendfsync {fsync} | {percentile(lat, 50):.2f} s | {percentile(lat, 99):.2f} s "
            f"| {len(lat)} stored of {len(probes[key].accepted)} accepted"
            f"{f', {lost} NOT STORED' if lost else ''} | "
            f"{', '.join(str(b) for b in backlog[key])} events | "
            f"{', '.join(_halves(b) for b in probes[key].backlogs)} |"
        )
    print()
    print("| CPU per request (ms, from /proc) | web | worker | redis |")
    print("|---|---|---|---|")
    if "bare POST" in results:
        print(f"| bare POST | {cpu('bare POST'):.3f} | | |")
    for fsync in beacons:
        key = f"beacon {fsync}"
        print(
            f"| beacon, appendfsync {fsync} | {cpu(key):.3f} | {cpu(key, 'worker'):.3f} "
            f"| {cpu(key, 'redis'):.3f} |"
        )
    if "tag GET" in results:
        print(f"| bare GET | {cpu('bare GET'):.3f} | | |")
        print(f"| tag GET | {cpu('tag GET'):.3f} | | |")
        print(f"| tag 304 | {cpu('tag 304'):.3f} | | |")
        print(f"| nginx GET | {cpu('nginx GET'):.3f} | | |")
    if drains:
        print()
        print(
            f"| worker alone, {opts.drain_events:,} buffered beacons | events/s | "
            "worker CPU per event | database server CPU per event | goal |"
        )
        print("|---|---|---|---|---|")
        for name, (rate, cpu_ms, server_ms) in drains.items():
            server = "in the worker" if server_ms is None else f"{server_ms * 1000:.0f} µs"
            print(f"| {name} | {rate:,.0f} | {cpu_ms * 1000:.0f} µs | {server} | ≥ 50,000 |")


def platform_line() -> str:
    """Python and CPU model, for the record."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or 'unknown CPU'}, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    main()
