"""A flood from one client against the rate limits of a running ``firsttag serve``.

Starts ``firsttag serve`` (embedded Redis, SQLite) on 127.0.0.1 behind a pretend proxy
(FIRSTTAG_TRUSTED_PROXIES=1, so X-Forwarded-For gives each simulated client its own
address), then for --seconds: one flooding client posts beacons to site A from
--flood-threads threads as fast as it can, while --visitors other clients of site A and
of site B each post one beacon every second. Prints, per group, requests/s sent, accepted
(202) and refused (429), and the visitors' latency. Bounded in time; stops by itself.

Usage: python bench/flood.py [--seconds 10] [--flood-threads 8] [--visitors 40]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flood-threads", type=int, default=8)
    parser.add_argument("--visitors", type=int, default=40)
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--no-limits", action="store_true", help="Lift the limits, to compare.")
    opts = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="firsttag-flood-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTTAG_")}
    env.update(FIRSTTAG_TRUSTED_PROXIES="1", FIRSTTAG_REDIS_FSYNC="everysec")
    if opts.no_limits:
        env.update(FIRSTTAG_RATE_PER_IP="100000000", FIRSTTAG_RATE_BROWSER="100000000")

    def cli(*args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "firsttag.ops.cli", *args, "--data-dir", str(data)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    site_a = cli("sites", "create", "--name", "A", "--origin", "https://a.example")
    site_b = cli("sites", "create", "--name", "B", "--origin", "https://b.example")
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firsttag.ops.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--web-processes",
            str(opts.web_processes),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stats: dict[str, Counter] = {g: Counter() for g in ("flood", "visitors A", "visitors B")}
    latencies: dict[str, list[float]] = {g: [] for g in stats}
    lock = threading.Lock()
    stop = time.monotonic() + 3600

    def post(session: requests.Session, group: str, site: dict, ip: str, n: int) -> None:
        body = {
            "siteKey": site["siteKey"],
            "id": f"{ip.replace('.', '-')}-{n:08d}",
            "name": "Bench",
            "visitorId": "v" * 32,
        }
        start = time.monotonic()
        r = session.post(
            base + "/api/v1/beacon",
            data=json.dumps(body),
            timeout=30,
            headers={"Content-Type": "text/plain", "X-Forwarded-For": ip},
        )
        with lock:
            stats[group][r.status_code] += 1
            latencies[group].append(time.monotonic() - start)

    def flooder(k: int) -> None:
        session, n = requests.Session(), 0
        while time.monotonic() < stop:
            n += 1
            post(session, "flood", site_a, "203.0.113.5", k * 10_000_000 + n)

    def visitor(group: str, site: dict, ip: str) -> None:
        session, n = requests.Session(), 0
        while time.monotonic() < stop:
            n += 1
            post(session, group, site, ip, n)
            time.sleep(1.0)  # about one a second, each on its own phase

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("serve did not come up")
            time.sleep(0.1)
        stop = time.monotonic() + opts.seconds
        threads = [threading.Thread(target=flooder, args=(k,)) for k in range(opts.flood_threads)]
        for i in range(opts.visitors):
            site, group = (site_a, "visitors A") if i % 2 else (site_b, "visitors B")
            ip = f"198.51.{100 + i // 250}.{i % 250 + 1}"
            threads.append(threading.Thread(target=visitor, args=(group, site, ip)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        serve.terminate()
        serve.wait(60)

    print(
        f"{opts.seconds:.0f} s, {opts.flood_threads} flood threads, {opts.visitors} visitors, "
        f"{opts.web_processes} web processes"
    )
    for group, counts in stats.items():
        sent = sum(counts.values())
        lat = sorted(latencies[group])
        p95 = lat[int(len(lat) * 0.95)] * 1000 if lat else 0.0
        print(
            f"{group:11s} sent {sent / opts.seconds:8.1f}/s  accepted {counts[202]:6d}  "
            f"refused 429 {counts[429]:6d}  other {sent - counts[202] - counts[429]:4d}  "
            f"latency p50 {statistics.median(lat) * 1000 if lat else 0:6.1f} ms p95 {p95:6.1f} ms"
        )


if __name__ == "__main__":
    main()
