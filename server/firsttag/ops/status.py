"""``firsttag status``: the state of the whole deployment, read from Redis and the store.

Everything shared lives in Redis and the database, so this works from any host: RQ's
worker registry (every worker process, wherever it runs), the backlog and its oldest
event, the drain lease, the dead letters and the newest one's error, RQ's failed jobs,
the schema revision. Web processes keep no registry: a load balancer sees them through
``/readyz``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry
from sqlalchemy import Engine

from firsttag import store
from firsttag.config import Config
from firsttag.events import deadletters
from firsttag.events.buffer import LEASE_KEY
from firsttag.events.readiness import snapshot, store_writable


def gather(redis: Redis, engine: Engine, config: Config) -> dict[str, Any]:
    """The status as a JSON-ready dict; ``ok`` is False when something needs a person."""
    report: dict[str, Any] = {"ok": True, "problems": []}
    try:
        report["schema"] = {
            "revision": store.current_revision(engine),
            "head": store.head_revision(),
        }
    except Exception as exc:  # the database is down: say so, go on with Redis
        report["schema"] = {"error": deadletters.describe(exc)}
    if report["schema"].get("revision", "") is None:
        report["problems"].append("the database has no schema yet: run `firsttag migrate`")
    store_error = store_writable(engine)
    report["store"] = {"writable": store_error is None, "error": store_error}
    if store_error:
        report["problems"].append(f"store not writable: {store_error}")
    try:
        report["pipeline"] = snapshot(redis)
        report["workers"] = [_worker(w) for w in Worker.all(connection=redis)]
        report["drainLease"] = redis.pttl(LEASE_KEY) > 0
        newest = redis.xrevrange(deadletters.DEAD_LETTER_KEY, count=1)
        report["lastDeadLetter"] = (
            _public(deadletters.letters(redis, [newest[0][0].decode()])[0]) if newest else None
        )
        failed = FailedJobRegistry(queue=Queue(config.queue_name, connection=redis))
        report["failedJobs"] = failed.count
    except Exception as exc:  # Redis down: nothing about the pipeline can be known
        report["ok"] = False
        report["problems"].append(f"redis: {deadletters.describe(exc)}")
        return report
    pipeline = report["pipeline"]
    if pipeline["backlog"] and not report["workers"]:
        report["problems"].append("events wait and no worker is registered")
    age = pipeline["oldestEventAgeSeconds"]
    if age is not None and age > config.ready_event_age_s:
        report["problems"].append(f"the oldest waiting event is {age:.0f} s old")
    if pipeline["deadLetters"]:
        report["problems"].append(f"{pipeline['deadLetters']} dead letters: `firsttag failed`")
    report["ok"] = not report["problems"]
    return report


def _worker(worker: Worker) -> dict[str, Any]:
    beat = worker.last_heartbeat
    return {
        "name": worker.name,
        "host": worker.hostname,
        "pid": worker.pid,
        "state": str(worker.get_state()),
        "heartbeatAgeSeconds": (
            round((datetime.now(UTC) - beat.replace(tzinfo=UTC)).total_seconds(), 1)
            if beat
            else None
        ),
    }


def _public(letter: deadletters.DeadLetter) -> dict[str, Any]:
    # Never the event itself: it may hold personal data; `firsttag failed` shows it.
    return {
        "id": letter.id,
        "failedAt": letter.failed_at,
        "reason": letter.reason,
        "error": letter.error,
        "site": letter.site,
    }


def render(report: dict[str, Any]) -> str:
    """The report as one screen of text."""
    lines = [f"firsttag status: {'ok' if report['ok'] else 'ATTENTION'}"]
    schema = report["schema"]
    if "error" in schema:
        lines.append(f"  schema        error: {schema['error']}")
    else:
        current = "current" if schema["revision"] == schema["head"] else "NOT current"
        lines.append(
            f"  schema        {schema['revision']} (this release: {schema['head']}, {current})"
        )
    store_state = "writable" if report["store"]["writable"] else report["store"]["error"]
    lines.append(f"  store         {store_state}")
    pipeline = report.get("pipeline")
    if pipeline is not None:
        age = pipeline["oldestEventAgeSeconds"]
        lines.append(
            f"  backlog       {pipeline['backlog']:,} events, {pipeline['backlogBytes']:,} B, "
            f"lag {f'{age:.1f} s' if age is not None else '0 s (empty)'}"
        )
        lines.append(
            f"  drain         {'running' if report['drainLease'] else 'idle'}, "
            f"last worker beat {_seconds(pipeline['heartbeatAgeSeconds'])}"
        )
        lines.append(f"  workers       {len(report['workers'])}")
        for w in report["workers"]:
            beat = _seconds(w["heartbeatAgeSeconds"])
            lines.append(f"    {w['host']}:{w['pid']}  {w['state']:<9} beat {beat}")
        lines.append(f"  dead letters  {pipeline['deadLetters']:,}")
        last = report["lastDeadLetter"]
        if last:
            lines.append(
                f"  last error    {last['failedAt']} {last['reason']}: {last['error']} "
                f"(site {last['site'] or '?'}, {last['id']})"
            )
        lines.append(f"  failed jobs   {report['failedJobs']}")
    for problem in report["problems"]:
        lines.append(f"  ! {problem}")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s ago"
