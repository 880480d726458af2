"""Every Prometheus metric firsttag exports, defined once, and how a process exposes them.

Processes: each web process (granian runs several) and each RQ work-horse count in their
own memory-mapped files when ``PROMETHEUS_MULTIPROC_DIR`` is set, and :func:`registry`
sums the files of all of them. ``firsttag serve`` and ``firsttag web`` give their
children one fresh directory, so the web tier's ``GET /metrics`` also shows what the
workers on the same host stored; a worker on a host of its own serves the same sum on
``FIRSTTAG_WORKER_METRICS_PORT`` (see README, Deployment).

The variable must be set before ``prometheus_client`` is first imported, which is why the
CLI sets it at the top of the commands that start processes, never later.

Gauges of shared state (backlog, oldest event, dead letters, workers) are not counted by
any process: :class:`PipelineCollector` reads them from Redis at scrape time, so every
process reports the same numbers and no dead process leaves a stale value behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Requests by endpoint (the URL rule, never the raw path), method and status.
REQUESTS = Counter(
    "firsttag_http_requests_total",
    "HTTP requests answered, by endpoint (URL rule), method and status.",
    ["endpoint", "method", "status"],
)
#: Latency of requests by endpoint, from the first hook to the response.
LATENCY = Histogram(
    "firsttag_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (URL rule).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
#: Events at the door: accepted (durably queued), duplicate (already claimed), rejected (4xx).
EVENTS = Counter(
    "firsttag_events_total",
    "Events at the door, by outcome: accepted (queued), duplicate, rejected.",
    ["outcome"],
)
#: Requests refused by a rate limit (429 rate_limited), by endpoint.
RATE_LIMITED = Counter(
    "firsttag_rate_limited_requests_total",
    "Requests refused by a rate limit, by endpoint (URL rule).",
    ["endpoint"],
)
#: Events the worker committed to the store (a replayed event counts again: rows are no-ops).
STORED = Counter(
    "firsttag_events_stored_total", "Events written to the store by the worker, committed."
)
#: Events the worker could not store and recorded as dead letters.
DEAD_LETTERED = Counter(
    "firsttag_events_dead_lettered_total", "Events the worker moved to the dead letters."
)
#: Events per drain batch.
BATCH_SIZE = Histogram(
    "firsttag_drain_batch_events",
    "Events per drain batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
#: Seconds per drain batch: decode, write, commit and trim.
BATCH_SECONDS = Histogram(
    "firsttag_drain_batch_duration_seconds",
    "Time to store one drain batch (decode, write, commit, trim).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def record_batch(events: int, failed: int, seconds: float) -> None:
    """Count one drain batch of ``events``, of which ``failed`` became dead letters."""
    STORED.inc(events - failed)
    if failed:
        DEAD_LETTERED.inc(failed)
    BATCH_SIZE.observe(events)
    BATCH_SECONDS.observe(seconds)


def multiprocess_dir() -> str | None:
    """The directory the processes of this host count in, if multiprocess mode is on."""
    return os.environ.get(MULTIPROC_ENV) or None


def fresh_multiprocess_dir(path: Path) -> str:
    """Empty ``path`` (files of processes from an earlier run) and return it for the env.

    Called by the command that starts a host's processes, before any of them start: a
    file left by a process of the previous run would otherwise be summed for ever.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)
    return str(path)


class PipelineCollector(Collector):
    """Gauges of the shared pipeline, read at scrape time from ``snapshot()``.

    ``snapshot`` returns a mapping with ``backlog`` (events waiting), ``backlogBytes``,
    ``oldestEventAgeSeconds`` (None when nothing waits), ``deadLetters`` and ``workers``
    (RQ workers registered); a snapshot that raises exports ``firsttag_redis_up 0``.
    """

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, from one fresh snapshot."""
        try:
            state = self.snapshot()
        except Exception:  # Redis down: say so rather than fail the whole scrape
            yield GaugeMetricFamily("firsttag_redis_up", "Whether Redis answered.", value=0)
            return
        yield GaugeMetricFamily("firsttag_redis_up", "Whether Redis answered.", value=1)
        for name, key, text in (
            ("firsttag_backlog_events", "backlog", "Events waiting in Redis for a worker."),
            ("firsttag_backlog_bytes", "backlogBytes", "Bytes waiting in Redis."),
            ("firsttag_dead_letters", "deadLetters", "Events waiting in the dead letters."),
            ("firsttag_workers", "workers", "RQ workers registered in Redis."),
        ):
            yield GaugeMetricFamily(name, text, value=float(state.get(key) or 0))
        age = state.get("oldestEventAgeSeconds")
        yield GaugeMetricFamily(
            "firsttag_backlog_oldest_event_age_seconds",
            "Age of the oldest waiting event (0 when none waits).",
            value=float(age or 0),
        )


def registry(extra: list[Collector] | None = None) -> CollectorRegistry:
    """A registry of this host's counts: every process's files in multiprocess mode.

    Without ``PROMETHEUS_MULTIPROC_DIR`` (one process, e.g. under tests), the counts of
    this process. ``extra`` collectors (the pipeline gauges) are added to either.
    """
    if multiprocess_dir():
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
    else:
        reg = CollectorRegistry()
        for collector in _own_collectors():
            reg.register(collector)
    for collector in extra or []:
        reg.register(collector)
    return reg


def _own_collectors() -> list[Collector]:
    return [
        REQUESTS,
        LATENCY,
        EVENTS,
        RATE_LIMITED,
        STORED,
        DEAD_LETTERED,
        BATCH_SIZE,
        BATCH_SECONDS,
    ]


def exposition(reg: CollectorRegistry) -> bytes:
    """The Prometheus text format of ``reg``."""
    return generate_latest(reg)
