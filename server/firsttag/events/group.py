"""Group commit: the Redis writes of concurrent requests of one process in one round trip.

With ``appendfsync always`` Redis answers a write only once its append-only file is
fsynced, so each request's write waits for a disk flush. Redis already flushes once per
turn of its event loop for every client it read in that turn; what costs is each
request's own round trip, its own connection and redis-py's machinery per command.

:class:`GroupCommit` keeps one committer thread per process. A request hands its script
call to it and waits. The committer sends everything that is waiting as one pipeline
(``EVALSHA`` after ``EVALSHA``, no ``MULTI``: each call is atomic on its own and the
calls do not depend on one another), reads the replies, and wakes each request with its
own reply or its own error. There is no artificial linger: a group is whatever arrived
while the previous group was on its way, so a lone request is sent at once and a busy
process sends large groups.

A request is answered only once Redis has answered its call, so the promise of a 2xx
does not change: the event is in Redis, fsynced when Redis is configured to fsync.

The committer talks to one pooled connection directly (pack every call, one write, read
one reply per call) rather than through redis-py's ``Pipeline``: under load the
pipeline's per-command machinery was a third of a web process's Python time. A waiting
request sleeps on a bare lock (a latch) rather than a ``threading.Event``, whose
condition variable costs several lock operations on each side.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

import hiredis
from redis import Redis
from redis.commands.core import Script
from redis.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

#: The most calls sent in one round trip; more wait for the next group.
MAX_GROUP = 512
#: Groups in flight at once per process. One committer would serialise the round trips:
#: while its group waits for Redis's fsync, a second one already sends what arrived since,
#: which lands in the same or the next turn of Redis's event loop.
COMMITTERS = 2


class _Call:
    __slots__ = ("script", "keys", "args", "result", "error", "latch", "answered")

    def __init__(self, script: Script, keys: list[Any], args: list[Any]) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        # Held from birth; released exactly once, by the committer, when answered.
        self.latch = threading.Lock()
        self.latch.acquire()
        self.answered = False

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        """Set the reply (or error) and wake the waiting request; later answers are ignored."""
        if self.answered:
            return
        self.result, self.error, self.answered = result, error, True
        self.latch.release()


class GroupCommit:
    """Runs the script calls of concurrent threads of this process in shared round trips."""

    def __init__(
        self, redis: Redis, max_group: int = MAX_GROUP, committers: int = COMMITTERS
    ) -> None:
        self.redis = redis
        self.max_group = max_group
        self.committers = committers
        #: Round trips and calls so far: tests and benchmarks read the group sizes.
        self.round_trips = 0
        self.calls = 0
        self._waiting: deque[_Call] = deque()
        self._wake = threading.Condition()
        self._owner_pid = 0  # the process whose committer thread runs (none yet)

    def call(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next group; return its reply.

        Raises what Redis raised for this call (a script error, ``redis.RedisError``
        when Redis could not be reached), exactly as calling the script alone would.
        """
        call = _Call(script, keys, args)
        with self._wake:
            if self._owner_pid != os.getpid():
                # First use in this process (or in a child forked after it): the thread
                # of a parent does not exist here.
                self._waiting.clear()
                self._owner_pid = os.getpid()
                for n in range(self.committers):
                    threading.Thread(
                        target=self._run, name=f"group-commit-{n}", daemon=True
                    ).start()
            self._waiting.append(call)
            self.calls += 1
            self._wake.notify()
        call.latch.acquire()
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
                group = [
                    self._waiting.popleft() for _ in range(min(self.max_group, len(self._waiting)))
                ]
            try:
                self._commit(group)
            except BaseException as exc:  # never leave a request waiting for ever
                for call in group:
                    call.answer(error=exc)

    def _commit(self, group: list[_Call]) -> None:
        self.round_trips += 1
        pool = self.redis.connection_pool
        try:
            conn = pool.get_connection()
        except Exception as exc:  # Redis unreachable: every call of the group fails
            for call in group:
                call.answer(error=exc)
            return
        try:
            # As Pipeline.execute: a connection error disconnects, and the connection's
            # retry policy sends the calls still unanswered again.
            conn.retry.call_with_retry(
                lambda: self._exchange(conn, [c for c in group if not c.answered]),
                lambda _error: conn.disconnect(),
            )
        except Exception as exc:
            for call in group:
                call.answer(error=exc)  # only the calls not answered yet
            return
        finally:
            pool.release(conn)
        unknown = [call for call in group if isinstance(call.error, NoScriptError)]
        if unknown:  # not run: Redis restarted or flushed its scripts
            for script in {id(c.script): c.script for c in unknown}.values():
                self.redis.script_load(script.script)
            for call in unknown:
                call.error, call.answered = None, False
            self._commit(unknown)

    @staticmethod
    def _exchange(conn: AbstractConnection, group: list[_Call]) -> None:
        """Send every call of ``group`` in one write; answer each from its reply in turn."""
        # hiredis packs str (as UTF-8, redis-py's default encoding), bytes and numbers in C,
        # the same bytes as redis-py's packer without its Python pass over every argument.
        conn.send_packed_command(
            [
                b"".join(
                    [
                        hiredis.pack_command(
                            ("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
                        )
                        for c in group
                    ]
                )
            ]
        )
        for call in group:
            try:
                reply = conn.read_response()
            except ResponseError as exc:  # this call's own error: the next reply follows
                if isinstance(exc, NoScriptError):
                    call.error = exc  # kept for a retry after loading; not answered yet
                    continue
                call.answer(error=exc)
                continue
            call.answer(reply)
