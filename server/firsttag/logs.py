"""One JSON object per log line on stdout, for every process kind.

``configure()`` is called once by each process's entry point (the WSGI module, the
worker command); records then carry their fields as ``extra={"fields": {...}}``:

    log.info("request", extra={"fields": {"method": "POST", "status": 202, ...}})

prints ``{"time": "…", "level": "info", "logger": "firsttag.access", "msg": "request",
"method": "POST", "status": 202, …}``. Callers pass only values they have checked are
not secret: this module cannot know what a key looks like in every field, so it never
logs request bodies, headers or query strings itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

LEVEL_ENV = "FIRSTTAG_LOG_LEVEL"
DEFAULT_LEVEL = "INFO"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, msg, then its fields."""

    def __init__(self) -> None:
        super().__init__()
        # One encoder, and the time's seconds formatted once per second: every request
        # writes a line, and these were most of the formatter's cost.
        self._encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
        self._second = -1
        self._prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (exceptions as their type and message, no traceback frames)."""
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # Type and message only: a traceback's locals and SQL parameters stay out.
            line["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return self._encode(line)

    def _time(self, created: float) -> str:
        """``created`` as ``2026-11-23T18:45:29.123456Z`` (UTC)."""
        second = int(created)
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:  # rounds up into the next second: the slow, exact way
            return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if second != self._second:  # a benign race: both threads write the same prefix
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._prefix, self._second = prefix, second
        return f"{self._prefix}.{micros:06d}Z"


def level_from_env() -> str:
    """``FIRSTTAG_LOG_LEVEL`` (debug, info, warning, error; default info), or SystemExit."""
    raw = (os.environ.get(LEVEL_ENV) or DEFAULT_LEVEL).upper()
    if raw not in _LEVELS:
        raise SystemExit(f"{LEVEL_ENV} must be one of {', '.join(_LEVELS).lower()}, got {raw!r}")
    return raw


def configure(level: str | None = None) -> None:
    """Send every logger's records to stdout as JSON lines, at ``level`` (default: the env).

    Replaces the root logger's handlers, so a library that checks for one (RQ does) adds
    no coloured text handler of its own.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    # A web process writes a record per request, and the lines print none of the caller,
    # thread or process attributes: the logging HOWTO's "Optimization" settings skip
    # collecting them (findCaller walks the stack on every record).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or level_from_env())
