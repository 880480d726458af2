"""`firsttag serve` across restarts: of itself, and of any child that dies under it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
from pathlib import Path

import requests
from firsttag.ops.supervisor import FIRST_DELAY
from redis import Redis

from e2e.conftest import Serve
from tests.support import wait_until


def test_events_accepted_without_a_worker_are_stored_after_a_restart(tmp_path):
    web_only = Serve(tmp_path, "--workers", "0")
    url = web_only.start()
    site = web_only.create_site("https://shop.example")
    for n in range(200):
        body = {
            "siteKey": site["siteKey"],
            "id": f"restart{n:08d}",
            "name": "Buy",
            "visitorId": "v" * 32,
            "value": n,
            "currency": "EUR",
        }
        assert (
            requests.post(url + "/api/v1/beacon", data=json.dumps(body), timeout=10).status_code
            == 202
        )
    auth = {"Authorization": f"Bearer {site['secretKey']}"}
    assert (
        requests.get(url + "/api/v1/conversions", headers=auth, timeout=10).json()["data"] == []
    )  # no worker: nothing stored yet, all 200 wait in Redis
    web_only.stop()

    full = Serve(tmp_path)
    url = full.start()
    try:

        def stored() -> int:
            page = requests.get(url + "/api/v1/conversions?limit=500", headers=auth, timeout=10)
            return len(page.json()["data"])

        wait_until(lambda: stored() == 200, 60, "the 200 events from before the restart")
    finally:
        full.stop()


# ---- supervision: `serve` brings back whatever child dies ----------------------------


def _children(serve: Serve) -> dict[int, str]:
    """The live children of `serve`, pid → command line (a zombie has none)."""
    assert serve.process is not None
    found = {}
    for task in Path(f"/proc/{serve.process.pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for pid in (task / "children").read_text().split():
                with contextlib.suppress(FileNotFoundError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    if cmdline:
                        found[int(pid)] = cmdline.decode()
    return found


def _child(serve: Serve, marker: str, other_than: int | None = None) -> int | None:
    """The pid of the child whose command line holds ``marker`` (and is not ``other_than``)."""
    for pid, cmdline in _children(serve).items():
        if marker in cmdline and pid != other_than:
            return pid
    return None


def _beacon(url: str, site: dict, event_id: str) -> int:
    body = {"siteKey": site["siteKey"], "id": event_id, "name": "Buy", "visitorId": "v" * 32}
    try:
        return requests.post(url + "/api/v1/beacon", data=json.dumps(body), timeout=10).status_code
    except requests.RequestException:
        return 0


def _stored_ids(url: str, site: dict) -> list[str]:
    auth = {"Authorization": f"Bearer {site['secretKey']}"}
    try:
        page = requests.get(url + "/api/v1/conversions?limit=500", headers=auth, timeout=10)
    except requests.RequestException:
        return []
    if page.status_code != 200:
        return []
    return [c["eventId"] for c in page.json()["data"]]


def _restart_delays(serve: Serve, name: str) -> list[float]:
    log = (serve.data_dir / "serve.log").read_text()
    return [float(d) for d in re.findall(rf"{name} \(pid \d+\) .*; restarting in ([\d.]+) s", log)]


def test_a_killed_redis_is_restarted_and_no_acknowledged_event_is_lost(tmp_path):
    serve = Serve(tmp_path)
    url = serve.start()
    site = serve.create_site("https://shop.example")
    worker = None
    try:
        # Freeze the worker so the acknowledged events are still only in Redis at the kill.
        worker = wait_until(lambda: _child(serve, "firsttag.ops.cli worker"), 30, "the worker")
        os.killpg(worker, signal.SIGSTOP)
        acknowledged = [f"beforekill{n:06d}" for n in range(100)]
        assert all(_beacon(url, site, event_id) == 202 for event_id in acknowledged)
        assert _stored_ids(url, site) == []

        redis = _child(serve, "redis-server")
        assert redis is not None
        os.kill(redis, signal.SIGKILL)
        wait_until(lambda: _child(serve, "redis-server", other_than=redis), 30, "a new Redis")
        os.killpg(worker, signal.SIGCONT)

        # The web processes reconnect by themselves: writes are accepted again.
        attempts = iter(range(10_000))

        def a_write_is_accepted() -> bool:
            event_id = f"afterkill{next(attempts):06d}"
            if _beacon(url, site, event_id) == 202:
                acknowledged.append(event_id)
                return True
            return False

        wait_until(a_write_is_accepted, 30, "a write accepted after the restart")
        assert all(_beacon(url, site, f"later{n:06d}") == 202 for n in range(10))
        acknowledged += [f"later{n:06d}" for n in range(10)]

        # The worker (reconnected or restarted) stores every acknowledged event, once.
        wait_until(
            lambda: set(acknowledged) <= set(_stored_ids(url, site)),
            90,
            "every acknowledged event stored",
        )
        stored = _stored_ids(url, site)
        assert len(stored) == len(set(stored))
        assert "redis (pid" in (tmp_path / "serve.log").read_text()
    finally:
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker, signal.SIGCONT)
        serve.stop()


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(tmp_path):
    serve = Serve(tmp_path)
    serve.start()
    try:
        worker = None
        for _ in range(4):
            worker = wait_until(
                lambda previous=worker: _child(
                    serve, "firsttag.ops.cli worker", other_than=previous
                ),
                60,
                "the worker to be restarted",
            )
            os.kill(worker, signal.SIGKILL)
        wait_until(lambda: len(_restart_delays(serve, "worker-0")) == 4, 30, "4 logged restarts")
        delays = _restart_delays(serve, "worker-0")
        assert delays == [FIRST_DELAY * 2**n for n in range(4)]  # 0.5, 1, 2, 4 s
        # ... and it does come back after the longest delay.
        wait_until(
            lambda: _child(serve, "firsttag.ops.cli worker", other_than=worker), 60, "worker"
        )
    finally:
        serve.stop()


def test_a_killed_web_server_is_restarted_and_answers(tmp_path):
    serve = Serve(tmp_path)
    url = serve.start()
    try:
        web = _child(serve, "granian")
        assert web is not None
        os.kill(web, signal.SIGKILL)
        wait_until(lambda: _child(serve, "granian", other_than=web), 30, "a new web server")

        def healthy() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, 60, "the restarted web server to answer")
        assert _restart_delays(serve, "web") == [0.5]
    finally:
        serve.stop()


def test_data_files_are_owner_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # as an older firsttag left it
    data.chmod(0o755)
    serve = Serve(data)
    url = serve.start()
    site = serve.create_site("https://shop.example")
    try:
        assert _beacon(url, site, "modes000001") == 202
        wait_until(lambda: _stored_ids(url, site), 60, "the event stored")
        # Files Redis creates later (an append-only rewrite) are owner-only too.
        client = Redis.from_url(f"unix://{data / 'redis' / 'redis.sock'}")
        client.bgrewriteaof()
        wait_until(
            lambda: (
                client.info("persistence")["aof_rewrite_in_progress"] == 0
                and client.info("persistence")["aof_rewrites"] >= 1
            ),
            30,
            "the AOF rewrite",
        )
    finally:
        serve.stop()

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "firsttag.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600
    seen = set()
    for path in data.rglob("*"):
        if path.name == "serve.log":  # the test's own capture of serve's output
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        seen.add(path.name)
    assert {"redis", "appendonlydir", "redis.log"} <= seen
    assert any(name.endswith(".aof") for name in seen)
