"""The SQLite store's writing side: one ``sqlite3`` connection on a thread of its own, and the
rows of one transaction as the event loop assembles them.

Why not aiosqlite, as the reads use: a transaction must be *one* hop to the writer's thread
(each aiosqlite call is a wake-up of that thread and then of the event loop, and a
transaction made of separate calls paid one per statement), and the store hands a
transaction over and goes on assembling the next while SQLite commits it. A one-thread
executor does both with public asyncio calls (``run_in_executor`` returns the future at
once).

The GIL: ``sqlite3`` releases it while SQLite steps a statement, so the event loop runs while
SQLite writes. ``executemany`` steps once per row and takes the GIL back between rows, and
each time it may wait for the busy event loop to let go; a batch's events therefore go in as
multi-row ``INSERT``s, one step for up to :data:`MAX_ROWS_PER_INSERT` rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from watui.machine import EventType
from watui.stores.group_commit import Statement

T = TypeVar("T")

EVENT_COLUMNS = 6
"""(id, type, session_id, owner, ts, payload): the values of one ``events`` row."""

MAX_ROWS_PER_INSERT = 128
"""Rows per multi-row ``INSERT`` at most (768 values, far below SQLite's limit of 32,766).
A batch is split into powers of two, so the statement cache holds at most eight of them."""


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
]
"""Run (with the session id) in the transaction that deletes a session."""


@dataclass(slots=True)
class TransactionRows:
    """One transaction's rows, assembled on the event loop and written by :meth:`write` on
    the writer's thread."""

    events: list[Any] = field(default_factory=list)
    """The events' values, :data:`EVENT_COLUMNS` per row, one flat list (as the multi-row
    ``INSERT`` binds them)."""
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    deleted: list[tuple[str]] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def write(self, conn: sqlite3.Connection) -> float:
        """The whole transaction: all of it commits, or it is rolled back and the error raised.
        Returns how long it took, in seconds."""
        started = time.perf_counter()
        if self._one_statement():  # atomic by itself: one step, one hand-back of the GIL
            self._insert_events(conn)
            return time.perf_counter() - started
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert_events(conn)
            if self.messages:
                conn.executemany(
                    "INSERT INTO messages(id, session_id, direction, chat, text, message_id, status, error, ts)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    self.messages,
                )
            if self.sessions:
                conn.executemany(
                    "INSERT INTO sessions(id, owner, doc) VALUES (?,?,?) ON CONFLICT(id) DO UPDATE"
                    " SET owner=excluded.owner, doc=excluded.doc",
                    list(self.sessions.values()),
                )
            if self.deleted:
                conn.executemany("DELETE FROM sessions WHERE id = ?", self.deleted)
                # A deleted session's messages go with it, and so do the events that carry
                # their text (with their webhook deliveries: without the event there is no body).
                for sql in PURGE_DELETED_SESSION:
                    conn.executemany(sql, self.deleted)
            for sql, params in self.statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
            return time.perf_counter() - started
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _one_statement(self) -> bool:
        """Whether the transaction is a single ``INSERT`` of at most :data:`MAX_ROWS_PER_INSERT`
        events (the event log's common case), which SQLite commits atomically on its own."""
        return (
            0 < len(self.events) <= MAX_ROWS_PER_INSERT * EVENT_COLUMNS
            and (len(self.events) // EVENT_COLUMNS).bit_count() == 1
            and not (self.messages or self.sessions or self.deleted or self.statements)
        )

    def _insert_events(self, conn: sqlite3.Connection) -> None:
        values = self.events
        left = len(values) // EVENT_COLUMNS
        first = 0
        while left:
            rows = min(1 << (left.bit_length() - 1), MAX_ROWS_PER_INSERT)
            end = first + rows * EVENT_COLUMNS
            conn.execute(_INSERT_EVENTS[rows], values[first:end])
            first, left = end, left - rows


async def finished(future: concurrent.futures.Future[Any]) -> None:
    """Wait until ``future`` is done (without raising what it raised)."""
    if not future.done():
        await asyncio.wait([asyncio.wrap_future(future)])


class SqliteWriter:
    """The connection every write goes through, used only on its own thread."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn

    @classmethod
    async def open(cls, path: Path, *, pragmas: list[str]) -> SqliteWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watui-sqlite-writer")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                for pragma in pragmas:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    def start(self, fn: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` with the connection on the writer's thread and return at once; wait for it
        with :func:`finished`.

        Not an asyncio future on purpose: that one would have the thread wake the event loop
        when ``fn`` ends (one more wait for the GIL per transaction, and a system call); the
        store usually finds its transaction done when it looks, and only then needs no wake-up.
        """
        return self._executor.submit(fn, self._conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self.start(fn))

    async def execute_fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement on the writer's connection (migrations, counters, PRAGMAs)."""
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def executescript(self, script: str) -> None:
        await self.run(lambda conn: conn.executescript(script))

    async def close(self) -> None:
        try:
            await self.run(lambda conn: conn.close())
        finally:
            self._executor.shutdown(wait=True)
