"""One JSON object per log line on stdout, for every process kind.

``configure()`` is called once by each process's entry point (the WSGI module, the
worker command); records then carry their fields as ``extra={"fields": {...}}``:

    log.info("request", extra={"fields": {"method": "POST", "status": 202, ...}})

prints ``{"time": "…", "level": "info", "logger": "firsttag.access", "msg": "request",
"method": "POST", "status": 202, …}``. Callers pass only values they have checked are
not secret: this module cannot know what a key looks like in every field, so it never
logs request bodies, headers or query strings itself.

Lines are written in batches (:class:`BatchedLineHandler`): a web process logs every
request, and one ``write`` per line cost a system call and a contended hand-over of the
GIL per request (about a third of a beacon's CPU under 32 threads). A line reaches stdout
within :data:`FLUSH_INTERVAL_S`, at once when it is a warning or an error, and at exit;
a process killed outright (SIGKILL) loses at most that last fraction of a second.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

LEVEL_ENV = "FIRSTTAG_LOG_LEVEL"
DEFAULT_LEVEL = "INFO"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Longest time (seconds) an info line waits in memory before it is written.
FLUSH_INTERVAL_S = 0.1
#: Lines waiting that make the logging thread write them at once.
MAX_PENDING = 512
#: Bytes per write: a write to a pipe of at most this many is never interleaved with
#: another process's (POSIX PIPE_BUF), so the lines of granian's processes stay whole.
WRITE_CHUNK = 4096


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
        fields = getattr(record, "fields", None)
        error = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # Type and message only: a traceback's locals and SQL parameters stay out.
            error = f"{type(exc).__name__}: {exc}"[:300]
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            error,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        msg: str,
        fields: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> str:
        """The JSON line of a record made at ``created`` (a ``time.time()``) with these parts."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": level,
            "logger": logger,
            "msg": msg,
        }
        if fields:
            line.update(fields)
        if error is not None:
            line["error"] = error
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


class BatchedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches rather than one write each.

    ``emit`` only formats and appends the line; a flusher thread (one per process,
    started on first use, so also in a forked child) writes what is waiting every
    :data:`FLUSH_INTERVAL_S`. A record at WARNING or above, :data:`MAX_PENDING` waiting
    lines, ``flush()`` and ``close()`` (``logging.shutdown`` at exit) write at once.
    Each write is whole lines of at most :data:`WRITE_CHUNK` bytes (a longer line alone).
    """

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL_S) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending: list[str] = []
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's line (the caller holds the handler's lock)."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._queue(line, record.levelno)
        except Exception:  # as StreamHandler.emit: a broken stream never raises here
            self.handleError(record)

    def queue_info(self, line: str) -> None:
        """Queue an info ``line`` formatted by the caller (see :func:`info_line`)."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self._queue(line, logging.INFO)
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": line}))

    def _queue(self, line: str, levelno: int) -> None:
        self._pending.append(line)
        if self._flusher_pid != os.getpid():
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_often, name="log-flush", daemon=True).start()
        if levelno >= logging.WARNING or len(self._pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write every waiting line, in chunks of whole lines, and flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
            stream = self.stream
            chunk: list[str] = []
            size = 0
            for line in lines:
                n = len(line.encode()) + 1
                if chunk and size + n > WRITE_CHUNK:
                    self._write(stream, chunk)
                    chunk, size = [], 0
                chunk.append(line)
                size += n
            if chunk:
                self._write(stream, chunk)
            if stream and hasattr(stream, "flush"):
                stream.flush()

    @staticmethod
    def _write(stream: TextIO, lines: list[str]) -> None:
        stream.write("\n".join(lines) + "\n")
        stream.flush()  # one system call per chunk: the chunk's lines stay together

    def _flush_often(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                if self._pending:
                    self.flush()
            except Exception:  # a closed or broken stream: as StreamHandler, never raise
                self._pending.clear()


def info_line(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """Log ``msg`` with ``fields`` at INFO: the line ``logger.info(msg, extra={"fields":
    fields})`` prints, for lines written once per request.

    When the line's one destination is a :class:`BatchedLineHandler` with a
    :class:`JsonFormatter` (what :func:`configure` installs), the line is formatted and
    queued directly: the logging module's record, dispatch and handler chain cost about a
    fifth of a beacon's CPU under load (``bench/ratios.py``: 0.19 ms per beacon with the
    access log, 0.15 without). Anywhere else (a test's capturing handler, a filter, no
    handler at all) the record goes through ``logger.info`` as usual.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _only_batched_handler(logger)
    if handler is None:
        logger.info(msg, extra={"fields": fields})
        return
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    handler.queue_info(formatter.line(time.time(), "info", logger.name, msg, fields))


def _only_batched_handler(logger: logging.Logger) -> BatchedLineHandler | None:
    """The one handler an info record of ``logger`` reaches, if it is ours and unfiltered."""
    found: BatchedLineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BatchedLineHandler
                or handler.filters
                or handler.level > logging.INFO
                or type(handler.formatter) is not JsonFormatter
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


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
    handler = BatchedLineHandler(sys.stdout)
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
