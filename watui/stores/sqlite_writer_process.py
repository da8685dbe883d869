"""The program the SQLite store's writer process runs: one ``sqlite3`` connection, and the
statements the store sends it, one request at a time, in order.

Why a process: Python runs one thread at a time. ``sqlite3`` lets go of the interpreter
while SQLite steps a statement, but must take it back after each step, and the event loop,
busy assembling the next batch, holds it: a writer *thread* spent twice as long waiting for
the interpreter as it spent writing. A process has an interpreter of its own, so SQLite
writes while the event loop works, and the two never wait for each other.

This file uses the standard library only and is run as a script (``python -I -S``), so the
process starts in a few tens of milliseconds and knows nothing of watui: the store sends it
SQL and values, it answers with results. :mod:`watui.stores.sqlite_writer` is the other end.

The protocol, over the process's stdin and stdout: each message is a 4-byte little-endian
length and then a pickle. Requests and their answers:

- ``("open", path, pragmas, checkpoint_every)`` → ``("ok", None)``: connect, then run each
  PRAGMA. With ``checkpoint_every`` (seconds), the connection does not checkpoint the WAL
  itself: a thread of the process does, with a connection of its own, at most that often
  and only after commits. A checkpoint copies megabytes and syncs the database file; done
  in line, it held up the commit that crossed SQLite's threshold (about one in fifty, for
  several milliseconds each, a fifth of the writer's time), and every write queued behind it.
- ``("transaction", chained, steps)`` → ``("ok", seconds)``: run ``steps``, a list of
  ``(sql, params, many)``, in one transaction (``many``: ``executemany``). A single step
  that is not ``many`` runs alone, as SQLite makes one statement atomic by itself. With
  ``chained``, the transaction is not attempted if the transaction before it failed, and
  the answer is ``("skipped", None)``: its writes' ids follow ids that the store gives again.
- ``("fetchall", sql, params)`` → ``("ok", rows)``; ``("script", sql)`` → ``("ok", None)``.

Any request may instead be answered ``("error", (module, name, message, code, code_name))``
(the exception it raised, rebuilt by the store). When stdin closes (the store is closed, or
the process that opened it has died) the connection is closed and the process exits; the
signals a terminal or a service manager sends to the whole group are ignored, so the
writer outlives neither its store nor a write it was given.
"""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import struct
import sys
import threading
import time
from typing import Any, BinaryIO

HEADER = struct.Struct("<I")
"""The length of the pickle that follows."""


def read_message(stream: BinaryIO) -> Any | None:
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def run_transaction(conn: sqlite3.Connection, steps: list[tuple[str, Any, bool]]) -> float:
    """Run ``steps`` atomically: all of them commit, or the transaction is rolled back and
    the error raised. Returns how long it took, in seconds."""
    started = time.perf_counter()
    if len(steps) == 1 and not steps[0][2]:  # one statement: atomic by itself
        conn.execute(steps[0][0], steps[0][1])
        return time.perf_counter() - started
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params, many in steps:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
    return time.perf_counter() - started


def error_info(exc: BaseException) -> tuple[str, str, str, int | None, str | None]:
    return (
        type(exc).__module__,
        type(exc).__name__,
        str(exc),
        getattr(exc, "sqlite_errorcode", None),
        getattr(exc, "sqlite_errorname", None),
    )


class Checkpointer(threading.Thread):
    """Checkpoints the WAL in the background: a PASSIVE checkpoint (it never blocks the
    writer) after commits, at most every ``every`` seconds. SQLite lets go of the GIL while
    it checkpoints, so the writer commits meanwhile."""

    def __init__(self, path: str, every: float) -> None:
        super().__init__(name="watui-sqlite-checkpointer", daemon=True)
        self._path = path
        self._every = every
        self._committed = threading.Event()
        self._stopping = threading.Event()

    def committed(self) -> None:
        self._committed.set()

    def run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while True:
                self._committed.wait()
                if self._stopping.is_set():
                    return
                self._committed.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next commit tries again
                    print(f"checkpoint failed: {exc}", file=sys.stderr, flush=True)
                if self._stopping.wait(self._every):
                    return
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self._committed.set()
        self.join()


class Writer:
    """Answers requests on one connection."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.checkpointer: Checkpointer | None = None
        self.previous_failed = False
        """Whether the last transaction failed (a chained one after it is skipped)."""

    def answer(self, request: tuple[Any, ...]) -> tuple[str, Any]:
        kind = request[0]
        if kind == "transaction":
            _, chained, steps = request
            if chained and self.previous_failed:
                return ("skipped", None)
            try:
                seconds = run_transaction(self._connection(), steps)
            except Exception:
                self.previous_failed = True
                raise
            self.previous_failed = False
            if self.checkpointer is not None:
                if self.checkpointer.is_alive():
                    self.checkpointer.committed()
                else:  # it died (its traceback went to stderr): SQLite checkpoints in line again
                    self._connection().execute("PRAGMA wal_autocheckpoint=1000")
                    self.checkpointer = None
            return ("ok", seconds)
        if kind == "fetchall":
            return ("ok", self._connection().execute(request[1], request[2]).fetchall())
        if kind == "script":
            self._connection().executescript(request[1])
            return ("ok", None)
        if kind == "open":
            _, path, pragmas, checkpoint_every = request
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                for pragma in pragmas:
                    conn.execute(pragma)
                if checkpoint_every is not None:
                    conn.execute("PRAGMA wal_autocheckpoint=0")
            except BaseException:
                conn.close()
                raise
            self.conn = conn
            if checkpoint_every is not None:
                self.checkpointer = Checkpointer(path, checkpoint_every)
                self.checkpointer.start()
            return ("ok", None)
        raise ValueError(f"unknown request {kind!r}")

    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            raise sqlite3.ProgrammingError("the writer has no connection yet")
        return self.conn

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self.conn is not None:
            self.conn.close()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer every request until ``requests`` ends."""
    writer = Writer()
    try:
        while (request := read_message(requests)) is not None:
            try:
                answer = writer.answer(request)
            except Exception as exc:
                answer = ("error", error_info(exc))
            try:
                data = frame(answer)
            except Exception as exc:  # a result pickle cannot carry
                data = frame(("error", error_info(exc)))
            answers.write(data)
            answers.flush()
    finally:
        writer.close()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with os.fdopen(sys.stdin.fileno(), "rb", buffering=1 << 16, closefd=False) as requests, \
            os.fdopen(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False) as answers:
        serve(requests, answers)


if __name__ == "__main__":
    main()
