"""The SQLite store's writing side: the writer process that holds the one connection every
write goes through, and the rows of one transaction as the event loop assembles them.

The process runs :mod:`watui.stores.sqlite_writer_process` (why a process, and the protocol,
are told there). :class:`SqliteWriter` is this end of it: it starts the process, hands it a
transaction and returns at once with a future, and resolves that future when the answer
comes back, so the event loop assembles the next batch while SQLite writes this one.

If the process ends while the store is open (killed, out of memory), every write it held
and every later write fails with :class:`~watui.errors.StoreUnavailable`: whether a write it
held committed cannot be known, and watui must be restarted to write again.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
import pickle
import sqlite3
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.stores import sqlite_writer_process as program
from watui.stores.group_commit import Statement

log = logging.getLogger(__name__)

EVENT_COLUMNS = 6
"""(id, type, session_id, owner, ts, payload): the values of one ``events`` row."""

MAX_ROWS_PER_INSERT = 128
"""Rows per multi-row ``INSERT`` at most (768 values, far below SQLite's limit of 32,766).
A batch is split into powers of two, so the statement cache holds at most eight of them."""

CHECKPOINT_EVERY = 0.2
"""Seconds between background checkpoints of the WAL at most (while there are commits). At a
hundred thousand events a second the WAL grows by about 4 MB in that time, what SQLite's own
threshold (1,000 pages) lets it grow to."""

CLOSE_TIMEOUT = 30.0
"""Seconds the writer process gets to finish and exit once its store is closed."""

Step = tuple[str, Any, bool]
"""(sql, params, many): one statement of a transaction; ``many`` runs it with ``executemany``."""


def _insert_events(rows: int) -> str:
    return "INSERT INTO events(id, type, session_id, owner, ts, payload) VALUES " + ",".join(
        ["(?,?,?,?,?,?)"] * rows
    )


_INSERT_EVENTS = {1 << k: _insert_events(1 << k) for k in range(MAX_ROWS_PER_INSERT.bit_length())}

_MESSAGE_EVENTS = f"('{EventType.MESSAGE.value}', '{EventType.MESSAGE_STATUS.value}')"
PURGE_DELETED_SESSION = [
    "DELETE FROM webhook_deliveries WHERE session_id = ?1 AND event_id IN"
    f" (SELECT id FROM events WHERE session_id = ?1 AND type IN {_MESSAGE_EVENTS})",
    f"DELETE FROM events WHERE session_id = ? AND type IN {_MESSAGE_EVENTS}",
    "DELETE FROM messages WHERE session_id = ?",
    "DELETE FROM sent_keys WHERE session_id = ?",
]
"""Run (with the session id) in the transaction that deletes a session."""


class TransactionSkipped(Exception):
    """A transaction not attempted because the one queued before it failed."""


@dataclass(slots=True)
class TransactionRows:
    """One transaction's rows, assembled on the event loop; :meth:`steps` are what the writer
    process runs."""

    events: list[Any] = field(default_factory=list)
    """The events' values, :data:`EVENT_COLUMNS` per row, one flat list (as the multi-row
    ``INSERT`` binds them)."""
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    deleted: list[tuple[str]] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def steps(self) -> list[Step]:
        """The transaction's statements, in order. Events go in as multi-row ``INSERT``s of
        powers of two rows: one SQLite call for up to :data:`MAX_ROWS_PER_INSERT` of them, and
        a transaction that only logs a power of two of events is that single statement."""
        steps: list[Step] = []
        values = self.events
        left = len(values) // EVENT_COLUMNS
        first = 0
        while left:
            rows = min(1 << (left.bit_length() - 1), MAX_ROWS_PER_INSERT)
            end = first + rows * EVENT_COLUMNS
            steps.append((_INSERT_EVENTS[rows], values[first:end], False))
            first, left = end, left - rows
        if self.messages:
            steps.append((
                "INSERT INTO messages(id, session_id, direction, chat, text, message_id, status, error, ts,"
                " type, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)", self.messages, True,
            ))
        if self.sessions:
            steps.append((
                "INSERT INTO sessions(id, owner, doc) VALUES (?,?,?) ON CONFLICT(id) DO UPDATE"
                " SET owner=excluded.owner, doc=excluded.doc", list(self.sessions.values()), True,
            ))
        if self.deleted:
            steps.append(("DELETE FROM sessions WHERE id = ?", self.deleted, True))
            # A deleted session's messages go with it, and so do the events that carry their
            # text (with their webhook deliveries: without the event there is no body).
            steps += [(sql, self.deleted, True) for sql in PURGE_DELETED_SESSION]
        steps += [(sql, params, False) for sql, params in self.statements]
        return steps


class _Pickler(pickle.Pickler):
    """Sends the subclasses of ``str``, ``int`` and ``float`` (enums) as their plain values:
    the writer process knows no watui class (and SQLite binds them as their values anyway).
    Plain values never come here: pickle handles built-in types itself."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return str, (str.__str__(obj),)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return int, (int.__index__(obj),)
        if isinstance(obj, float):
            return float, (float.__float__(obj),)
        return NotImplemented


def request_frame(message: Any) -> bytes:
    """``message`` as the writer process reads it (see :mod:`watui.stores.sqlite_writer_process`)."""
    buffer = io.BytesIO()
    buffer.write(bytes(program.HEADER.size))
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    data = buffer.getbuffer()
    program.HEADER.pack_into(data, 0, len(data) - program.HEADER.size)
    del data
    return buffer.getvalue()


def _rebuilt(info: tuple[str, str, str, int | None, str | None]) -> Exception:
    """The exception the writer process raised, as this process can raise it: sqlite3's own
    errors keep their class and result code (how the store tells an outage from a bug)."""
    module, name, message, code, code_name = info
    cls = getattr(sqlite3 if module == "sqlite3" else builtins if module == "builtins" else None, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return RuntimeError(f"{module}.{name}: {message}")
    try:
        exc = cls(message)
    except TypeError:  # a class that wants more than a message
        return RuntimeError(f"{module}.{name}: {message}")
    if code is not None:
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        exc.sqlite_errorname = code_name  # type: ignore[attr-defined]
    return exc


class SqliteWriter(asyncio.SubprocessProtocol):
    """The writer process, seen from the event loop: requests go out in order and their
    answers come back in the same order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.SubprocessTransport | None = None
        self._requests: asyncio.WriteTransport | None = None
        self._answers = bytearray()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._exited: asyncio.Future[None] = loop.create_future()
        self._ended: str | None = None
        """Why the process is gone (None while it runs)."""
        self._closing = False

    @classmethod
    async def open(
        cls, path: Path, *, pragmas: list[str], checkpoint_every: float | None = CHECKPOINT_EVERY
    ) -> SqliteWriter:
        """Start the writer process and open ``path`` in it with ``pragmas``; the WAL is
        checkpointed in the background every ``checkpoint_every`` seconds after commits
        (None: by SQLite, in line, as it does by default)."""
        loop = asyncio.get_running_loop()
        writer = cls(loop)
        await loop.subprocess_exec(
            lambda: writer, sys.executable, "-I", "-S", program.__file__,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is for watui, which flushes, then closes it
        )
        try:
            await writer._request(("open", str(path), pragmas, checkpoint_every))
        except BaseException:
            await writer.close()
            raise
        return writer

    @property
    def pid(self) -> int | None:
        return self._transport.get_pid() if self._transport is not None else None

    @property
    def failure(self) -> str | None:
        """Why the process ended while its store was open (None while it runs, or once it
        exited because the store was closed)."""
        return None if self._closing else self._ended

    # ------------------------------------------------------------ requests

    def transaction(self, rows: TransactionRows, *, chained: bool = False) -> asyncio.Future[float]:
        """Hand ``rows`` over as one transaction and return at once; the future gives how long
        it took in seconds, or fails with why it did not commit (``TransactionSkipped`` if
        ``chained`` and the transaction before it failed)."""
        return self._send(("transaction", chained, rows.steps()))

    async def execute_fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement on the writer's connection (migrations, counters, PRAGMAs)."""
        return await self._request(("fetchall", sql, params))  # type: ignore[no-any-return]

    async def executescript(self, script: str) -> None:
        await self._request(("script", script))

    async def _request(self, request: tuple[Any, ...]) -> Any:
        return await self._send(request)

    def _send(self, request: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._ended is not None or self._requests is None or self._closing:
            future.set_exception(self._gone())
            return future
        try:
            data = request_frame(request)
        except Exception as exc:  # a value pickle cannot carry: this request fails alone
            future.set_exception(exc)
            return future
        self._requests.write(data)
        self._waiting.append(future)
        return future

    def _gone(self) -> StoreUnavailable:
        if self._closing and self._ended is None:
            return StoreUnavailable("The store is closed.")
        return StoreUnavailable(
            f"The SQLite writer process ended ({self._ended}); this write may not have committed. Restart watui.",
            details={"reason": self._ended},
        )

    # ------------------------------------------------------------ the process's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport
        requests = transport.get_pipe_transport(0)
        assert isinstance(requests, asyncio.WriteTransport)
        self._requests = requests

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        if fd == 2:
            for line in data.decode(errors="replace").splitlines():
                log.error("SQLite writer process: %s", line)
            return
        answers = self._answers
        answers += data
        header = program.HEADER.size
        while len(answers) >= header:
            (size,) = program.HEADER.unpack_from(answers)
            end = header + size
            if len(answers) < end:
                break
            kind, value = pickle.loads(answers[header:end])
            del answers[:end]
            self._resolve(kind, value)

    def _resolve(self, kind: str, value: Any) -> None:
        future = self._waiting.popleft()
        if future.done():  # a caller that stopped waiting
            return
        if kind == "ok":
            future.set_result(value)
        elif kind == "skipped":
            future.set_exception(TransactionSkipped())
        else:
            future.set_exception(_rebuilt(value))

    def connection_lost(self, exc: Exception | None) -> None:
        """The process has exited and its answers have all been read (not before: a write it
        committed before it died still counts)."""
        code = self._transport.get_returncode() if self._transport is not None else None
        self._end(f"exit code {code}")
        if not self._exited.done():
            self._exited.set_result(None)

    def _end(self, reason: str) -> None:
        if self._ended is not None:
            return
        self._ended = reason
        if self._waiting or not self._closing:
            log.critical("the SQLite writer process ended (%s): every write is refused until watui restarts", reason)
        error = self._gone()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    # ------------------------------------------------------------ closing

    async def close(self) -> None:
        """Let the process finish what it was given, then wait for it to exit (killing it
        if it does not within :data:`CLOSE_TIMEOUT` seconds)."""
        self._closing = True
        if self._transport is None:
            return
        if self._requests is not None and not self._requests.is_closing():
            self._requests.close()  # after what is buffered: the process reads to the end, then exits
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout=CLOSE_TIMEOUT)
        except TimeoutError:
            log.error("the SQLite writer process did not exit in %.0f s; killing it", CLOSE_TIMEOUT)
            self._transport.kill()
            await self._exited
        finally:
            self._transport.close()
