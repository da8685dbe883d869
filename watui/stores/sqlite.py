"""The store: SQLite in WAL mode, with a versioned schema.

Writes go through one writer task that *group-commits* (:mod:`watui.stores.group_commit`):
whatever is queued while a commit is in flight goes into the next transaction, so a burst of
a thousand events costs a handful of fsyncs instead of a thousand. A write's future resolves
only after its transaction has committed, so anything reported as written survives a
``kill -9``. The transactions run in a writer process with a connection of its own
(:mod:`watui.stores.sqlite_writer`), so SQLite writes while the event loop works.

Reads use a second connection, through aiosqlite. In WAL mode it never sees a transaction
that has not committed, so a reader can never hand out an event that a crash could still
take back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.models import (
    ApiKey,
    Event,
    Message,
    MessageDirection,
    MessageStatus,
    NewEvent,
    NewMessage,
    Session,
    utcnow,
)
from watui.stores.datadir import private_database_files
from watui.stores.encoding import payload_json, utc_text
from watui.stores.group_commit import (
    EventHook,
    GroupCommitWriter,
    QueuedWrite,
    Statement,
    StoreClosed,
    WriteResult,
)
from watui.stores.sqlite_writer import SqliteWriter, TransactionRows, TransactionSkipped

__all__ = [
    "MIGRATIONS", "OUTGOING_PROGRESS", "SCHEMA_VERSION", "EventHook", "NewMessage", "Statement", "Store",
    "StoreClosed", "WriteResult", "hash_key",
]

log = logging.getLogger(__name__)

# Forward migrations; index i brings the schema from version i to i + 1. Never edit one that
# has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id    TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        doc   TEXT NOT NULL
    );
    CREATE INDEX sessions_owner ON sessions(owner);
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        type       TEXT NOT NULL,
        session_id TEXT NOT NULL,
        owner      TEXT NOT NULL,
        ts         TEXT NOT NULL,
        payload    TEXT NOT NULL
    );
    CREATE INDEX events_session ON events(session_id, id);
    CREATE INDEX events_owner ON events(owner, id);
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('admin', 'user')),
        key_hash   TEXT NOT NULL UNIQUE,
        prefix     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        direction  TEXT NOT NULL,
        chat       TEXT NOT NULL,
        text       TEXT NOT NULL,
        message_id TEXT,
        status     TEXT NOT NULL,
        error      TEXT,
        ts         TEXT NOT NULL
    );
    CREATE INDEX messages_session ON messages(session_id, id);
    """,
    # 1 -> 2: the webhook outbox (watui/webhooks.py) and its attempts log.
    """
    CREATE TABLE webhook_deliveries (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         INTEGER NOT NULL,
        session_id       TEXT NOT NULL,
        webhook_id       TEXT NOT NULL UNIQUE,
        url              TEXT NOT NULL,
        secret           TEXT,
        status           TEXT NOT NULL
                         CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT,
        last_status_code INTEGER,
        last_error       TEXT,
        created_at       TEXT NOT NULL,
        delivered_at     TEXT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
    CREATE TABLE webhook_attempts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt     INTEGER NOT NULL,
        ts          TEXT NOT NULL,
        status_code INTEGER,
        error       TEXT,
        duration_ms REAL NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);
    """,
    # 2 -> 3: receipts find a sent message by WhatsApp's id.
    """
    CREATE INDEX messages_message_id ON messages(session_id, message_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _event(row: Any) -> Event:
    """An ``events`` row (id, type, session_id, owner, ts, payload) as an Event."""
    return Event(id=row[0], type=EventType(row[1]), session_id=row[2], owner=row[3],
                 timestamp=_parse_ts(row[4]), payload=json.loads(row[5]))


def hash_key(secret: str) -> str:
    # API keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


OUTGOING_PROGRESS = (MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
"""The statuses a sent message goes through, in order."""


_OUTAGES = frozenset({"FULL", "READONLY", "IOERR", "CANTOPEN", "BUSY", "LOCKED", "PERM", "NOLFS", "NOMEM"})
"""SQLite result codes (``SQLITE_FULL``, ``SQLITE_IOERR_WRITE``, …) that mean the store cannot
write right now, as opposed to a bad statement (a bug)."""


def _unavailable(exc: Exception) -> Exception:
    """A failed write as the service reports it: :class:`StoreUnavailable` when SQLite could
    not write (disk full, read-only, I/O error, locked), the error itself otherwise (a missing
    table or a constraint violated is a bug, not an outage)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if isinstance(exc, sqlite3.Error) and name.removeprefix("SQLITE_").split("_")[0] in _OUTAGES:
        unavailable = StoreUnavailable(
            f"The store cannot write right now ({exc}); nothing was changed. Retry later.",
            details={"reason": str(exc)},
        )
        unavailable.__cause__ = exc
        return unavailable
    return exc


PIPELINE_DEPTH = 2
"""Transactions handed to the writer process at most: one committing, one waiting for it."""


@dataclass(slots=True)
class _Assembled:
    """A batch ready for its transaction: its rows, what each write gets back, all its events
    in id order, and the (event, message) ids the batch after it starts at."""

    rows: TransactionRows
    results: list[WriteResult]
    events: list[Event]
    ends: tuple[int, int]


@dataclass(slots=True)
class _Flight:
    """A batch whose transaction was handed to the writer process (its future gives the
    transaction's duration in seconds)."""

    batch: list[QueuedWrite]
    assembled: _Assembled
    transaction: asyncio.Future[float]

    @property
    def ends(self) -> tuple[int, int]:
        return self.assembled.ends


class Store(GroupCommitWriter):
    """Sessions, the append-only event log, API keys and messages (the SQLite backend of
    :class:`watui.stores.base.StoreProtocol`)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"
    """The SQL that ``fetchall`` and ``write(statements=...)`` take."""

    def __init__(
        self,
        path: Path,
        writer: SqliteWriter,
        reader: aiosqlite.Connection,
        *,
        max_batch: int,
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.path = path
        self.writer = writer
        """The process every write goes through, with a connection of its own."""
        self._r = reader
        self._next_event_id = 1
        self._next_message_id = 1
        self.event_hooks: list[EventHook] = []
        self.on_commit: list[Callable[[list[Event]], None]] = []
        """Called in commit order, right after each transaction, with its events (the bus)."""
        self.commits = 0
        """Transactions committed so far (the benchmark reads it)."""
        self.commit_observers: list[Callable[[float], None]] = []
        """Called with each transaction's duration in seconds (``GET /metrics``)."""
        self.last_committed_id = 0
        """The id of the newest committed event."""
        self.failing: str | None = None
        """Why the last write failed, until one succeeds again (logged once per outage)."""

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls, path: Path | str, *, synchronous: str = "FULL", max_batch: int = 64
    ) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        private_database_files(path)
        writer = await SqliteWriter.open(path, pragmas=[
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ])
        try:
            await cls._migrate(writer)
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        store = cls(path, writer, reader, max_batch=max_batch)
        try:
            await reader.execute("PRAGMA busy_timeout=5000")
            reader.row_factory = aiosqlite.Row
            await store._load_counters()
            store.last_committed_id = await store.max_event_id()
        except BaseException:  # no writer process or reader thread left behind
            await writer.close()
            await reader.close()
            raise
        store._start_writer("watui-store-writer")
        return store

    @staticmethod
    async def _migrate(writer: SqliteWriter) -> None:
        rows = await writer.execute_fetchall("PRAGMA user_version")
        version = int(rows[0][0]) if rows else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this watui ({SCHEMA_VERSION})"
            )
        for target in range(version, SCHEMA_VERSION):
            log.info("migrating store schema %d -> %d", target, target + 1)
            await writer.executescript(
                "BEGIN IMMEDIATE;\n" + MIGRATIONS[target] + f"\nPRAGMA user_version={target + 1};\nCOMMIT;"
            )

    async def _load_counters(self) -> None:
        # AUTOINCREMENT's sqlite_sequence remembers the highest id ever used, so ids are never
        # reused even if rows were removed.
        seq = {name: value for name, value in await self.writer.execute_fetchall(
            "SELECT name, seq FROM sqlite_sequence"
        )}
        for table in ("events", "messages"):
            rows = await self.writer.execute_fetchall(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
            seq[table] = max(int(seq.get(table, 0)), int(rows[0][0]) if rows else 0)
        self._next_event_id = seq["events"] + 1
        self._next_message_id = seq["messages"] + 1

    async def close(self) -> None:
        """Flush every queued write, then close both connections."""
        if not await self._stop_writer():
            return
        with contextlib.suppress(Exception):
            await self.writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        await self.writer.close()
        await self._r.close()

    @property
    def broken(self) -> str | None:
        """Why the store cannot write again until watui restarts (its writer task or writer
        process died), or None."""
        if (failure := super().broken) is not None:
            return failure
        return f"its writer process ended ({self.writer.failure})" if self.writer.failure else None

    # ---------------------------------------------------------------- writes

    async def _write_loop(self) -> None:
        """Commit batch after batch, assembling each on the event loop while the ones before
        are in the writer process: Python builds batches while SQLite writes them.

        Up to :data:`PIPELINE_DEPTH` transactions are handed over at once, so it goes from
        one commit straight to the next. Batches settle (``on_commit``, then their writers'
        futures) in commit order. Ids are given at assembly, following the batches queued
        before; a transaction whose predecessor failed is not attempted
        (``TransactionSkipped``), and once the failed batch's writes have been tried again
        alone, the batches after it are assembled again from the ids actually taken, so ids
        stay in commit order with no gap.
        """
        flights: deque[_Flight] = deque()
        batch: list[QueuedWrite] | None = None
        try:
            while True:
                batch = self._take_batch() if flights else await self._next_batch()
                if batch is None:
                    return
                if not batch:  # nothing more queued: settle what was handed over, then wait
                    await self._settle(flights.popleft())
                    continue
                try:
                    assembled = self._assemble(batch, *(flights[-1].ends if flights else self._next_ids))
                except Exception as exc:  # a write that cannot be assembled (a hook failed) fails alone
                    await self._settle_all(flights)
                    await self._each_alone(batch, exc)
                    continue
                failed = False
                while len(flights) >= PIPELINE_DEPTH and not failed:
                    failed = not await self._settle(flights.popleft())
                if failed:  # the ids this batch was given may have gone to the retries
                    await self._settle_all(flights)
                    await self._commit(batch)
                    continue
                flights.append(self._hand_over(batch, assembled, chained=bool(flights)))
        except BaseException as exc:  # a bug: fail the writes this loop holds, not leave them waiting
            held = [w for flight in flights for w in flight.batch] + (batch or [])
            error = StoreUnavailable(f"The store's writer failed ({exc!r}); this write may not have committed.")
            for write in held:
                if not write.future.done():
                    write.future.set_exception(error)
            raise

    async def _commit(self, batch: list[QueuedWrite]) -> None:
        """Assemble and commit ``batch`` on its own (no overlap), refusing any write that
        cannot be assembled or written."""
        try:
            assembled = self._assemble(batch, *self._next_ids)
        except Exception as exc:
            await self._each_alone(batch, exc)
            return
        await self._settle(self._hand_over(batch, assembled))

    async def _each_alone(self, batch: list[QueuedWrite], exc: Exception) -> None:
        """``batch`` failed with ``exc``: try each of its writes again alone, so one bad write
        cannot fail its neighbours; a write that failed alone is refused."""
        if len(batch) > 1:
            for write in batch:
                await self._commit([write])
        else:
            self._refuse(batch, exc)

    @property
    def _next_ids(self) -> tuple[int, int]:
        return self._next_event_id, self._next_message_id

    def _assemble(self, batch: list[QueuedWrite], next_event: int, next_message: int) -> _Assembled:
        """The batch's rows and what each write gets back, with ids from ``next_event`` and
        ``next_message`` in queue order.

        Runs on the event loop: the hooks read the manager's state. Their statements join
        the transaction, so a hook runs again if its batch is assembled again."""
        rows = TransactionRows()
        values = rows.events
        hooks = self.event_hooks
        results: list[WriteResult] = []
        all_events: list[Event] = []
        committed = Event.committed
        # Every event goes through this loop: it is kept to what each one needs.
        for write in batch:
            events: list[Event] = []
            for new in write.events:
                event = committed(new, next_event)
                events.append(event)
                # The type, a StrEnum, reaches the writer process as its text.
                values += (next_event, new.type, new.session_id, new.owner, utc_text(new.timestamp),
                           payload_json(new.payload))
                next_event += 1
                for hook in hooks:
                    rows.statements.extend(hook(event))
            messages: list[Message] = []
            if write.messages:
                next_message = self._assemble_messages(write.messages, next_message, rows, messages)
            for session in write.sessions:
                rows.sessions[session.id] = (session.id, session.owner, session.model_dump_json())
            for session_id in write.deleted:
                rows.sessions.pop(session_id, None)
                rows.deleted.append((session_id,))
            if write.statements:
                rows.statements += write.statements
            results.append(WriteResult(events, messages))
            all_events += events
        return _Assembled(rows, results, all_events, (next_event, next_message))

    @staticmethod
    def _assemble_messages(
        new_messages: Sequence[NewMessage], next_message: int, rows: TransactionRows, messages: list[Message]
    ) -> int:
        """Add the messages' rows and models, with ids from ``next_message``; the id after them."""
        for m in new_messages:
            messages.append(Message(
                id=next_message, session_id=m.session_id, direction=m.direction, chat=m.chat,
                text=m.text, message_id=m.message_id, status=m.status, error=m.error,
                timestamp=m.timestamp,
            ))
            rows.messages.append(
                (next_message, m.session_id, m.direction.value, m.chat, m.text, m.message_id,
                 m.status.value, m.error, utc_text(m.timestamp))
            )
            next_message += 1
        return next_message

    def _hand_over(self, batch: list[QueuedWrite], assembled: _Assembled, *, chained: bool = False) -> _Flight:
        """Hand the batch's transaction to the writer process and go on meanwhile. ``chained``:
        it follows a transaction still in flight, and is not attempted if that one fails (its
        ids follow ids that are given again when that one's writes are retried)."""
        return _Flight(batch, assembled, self.writer.transaction(assembled.rows, chained=chained))

    @staticmethod
    async def _committed(flight: _Flight) -> bool:
        """Wait until the batch's transaction has ended; whether it committed."""
        if not flight.transaction.done():
            await asyncio.wait([flight.transaction])
        return flight.transaction.exception() is None

    async def _settle(self, flight: _Flight) -> bool:
        """Wait for the batch's transaction, then resolve its writes; whether it committed.

        If the batch failed, each write is tried again alone, so one bad write cannot fail its
        neighbours; if it was skipped (the batch before it failed), it is assembled again."""
        if await self._committed(flight):
            self._settled(flight)
            return True
        exc = flight.transaction.exception()
        assert isinstance(exc, Exception)
        if isinstance(exc, TransactionSkipped):
            await self._commit(flight.batch)
        else:
            await self._each_alone(flight.batch, exc)
        return False

    async def _settle_all(self, flights: deque[_Flight]) -> None:
        """Settle every queued batch, oldest first."""
        while flights:
            await self._settle(flights.popleft())

    def _settled(self, flight: _Flight) -> None:
        """The batch committed: count it, take its ids, tell ``on_commit``, resume its writers."""
        if self.failing is not None:
            log.warning("store writes succeed again (after: %s)", self.failing)
            self.failing = None
        self.commits += 1
        seconds = flight.transaction.result()
        for observe in self.commit_observers:
            observe(seconds)
        assembled = flight.assembled
        self._next_event_id, self._next_message_id = assembled.ends
        if assembled.events:
            self.last_committed_id = assembled.events[-1].id
            for callback in self.on_commit:
                try:
                    callback(assembled.events)
                except Exception:
                    log.exception("on_commit callback failed")
        for write, result in zip(flight.batch, assembled.results, strict=True):
            if not write.future.done():
                write.future.set_result(result)

    def _refuse(self, batch: list[QueuedWrite], exc: Exception) -> None:
        error = _unavailable(exc)
        if not isinstance(error, StoreUnavailable):
            log.error("store write failed", exc_info=exc)
        elif self.failing is None:  # once per outage, not once per write
            log.error("store writes are failing (%s); each is refused until one succeeds", exc)
        if isinstance(error, StoreUnavailable):
            self.failing = str(exc)
        for write in batch:
            if not write.future.done():
                write.future.set_exception(error)

    # ---------------------------------------------------------------- reads

    async def load_sessions(self) -> list[Session]:
        rows = await self._fetch("SELECT doc FROM sessions ORDER BY rowid")
        # Stored values are taken as they are: a rule added later (a stricter secret format)
        # must not stop a start; what cannot be used is refused where it is used.
        return [Session.model_validate_json(row[0], context={"stored": True}) for row in rows]

    async def read_events(
        self,
        *,
        after_id: int = 0,
        owner: str | None = None,
        session_id: str | None = None,
        types: Iterable[EventType] | None = None,
        limit: int = 500,
    ) -> list[Event]:
        """Committed events after ``after_id``, oldest first."""
        where = ["id > ?"]
        params: list[Any] = [after_id]
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if types is not None:
            wanted = [t.value for t in types]
            where.append(f"type IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        params.append(limit)
        rows = await self._fetch(
            f"SELECT id, type, session_id, owner, ts, payload FROM events WHERE {' AND '.join(where)}"
            " ORDER BY id LIMIT ?",
            params,
        )
        return [_event(row) for row in rows]

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """A session's latest events, oldest first."""
        rows = await self._fetch(
            "SELECT id, type, session_id, owner, ts, payload FROM events WHERE session_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (session_id, limit),
        )
        return [_event(row) for row in reversed(rows)]

    async def max_event_id(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(rows[0][0])

    async def oldest_event_id(self) -> int:
        """The id of the oldest event the log still keeps (retention prunes older ones); one
        past the newest if it keeps none."""
        rows = await self._fetch("SELECT MIN(id) FROM events")
        oldest = rows[0][0]
        return int(oldest) if oldest is not None else self.last_committed_id + 1

    async def count_events(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM events")
        return int(rows[0][0])

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Message], int]:
        """A session's messages, newest first, and how many there are in all."""
        rows = await self._fetch(
            "SELECT id, session_id, direction, chat, text, message_id, status, error, ts FROM messages"
            " WHERE session_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (session_id, limit, offset),
        )
        total = await self._fetch(
            "SELECT COUNT(*) FROM messages WHERE session_id = ?", (session_id,)
        )
        messages = [
            Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3], text=r[4],
                    message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=_parse_ts(r[8]))
            for r in rows
        ]
        return messages, int(total[0][0])

    async def find_message(self, session_id: str, message_id: str) -> Message | None:
        """The session's newest message with WhatsApp's id ``message_id``, if stored."""
        rows = await self._fetch(
            "SELECT id, session_id, direction, chat, text, message_id, status, error, ts FROM messages"
            " WHERE session_id = ? AND message_id = ? ORDER BY id DESC LIMIT 1",
            (session_id, message_id),
        )
        if not rows:
            return None
        r = rows[0]
        return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3], text=r[4],
                       message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=_parse_ts(r[8]))

    async def update_message_status(
        self,
        session_id: str,
        message_id: str,
        status: MessageStatus,
        *,
        events: Sequence[NewEvent] = (),
    ) -> WriteResult:
        """Move a sent message's status forward (sent → delivered → read), with its events.

        Only outgoing messages move, and never backwards: a late ``delivered`` receipt leaves
        a ``read`` message as it is (the guard is in the UPDATE itself).
        """
        earlier = [s.value for s in OUTGOING_PROGRESS[: OUTGOING_PROGRESS.index(status)]]
        marks = ",".join("?" * len(earlier))
        return await self.write(
            events=events,
            statements=[(
                "UPDATE messages SET status = ? WHERE session_id = ? AND message_id = ?"
                f" AND direction = 'out' AND status IN ({marks})",
                (status.value, session_id, message_id, *earlier),
            )],
        )

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the reader connection, for modules that own their own tables."""
        return await self._fetch(sql, params)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._r.execute_fetchall(sql, params))

    # ---------------------------------------------------------------- API keys

    async def create_api_key(self, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """Make a key; the secret is returned once and only its hash is stored."""
        owner = owner.strip()
        if not owner:
            raise ValueError("owner must not be blank")
        secret = "wat_" + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            owner=owner,
            role="admin" if admin else "user",
            prefix=secret[:10],
            created_at=utcnow(),
        )
        await self.write(statements=[(
            "INSERT INTO api_keys(id, owner, role, key_hash, prefix, created_at) VALUES (?,?,?,?,?,?)",
            (key.id, key.owner, key.role, hash_key(secret), key.prefix, utc_text(key.created_at)),
        )])
        return key, secret

    async def find_api_key(self, secret: str) -> ApiKey | None:
        rows = await self._fetch(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys"
            " WHERE key_hash = ? AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return self._key(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._fetch(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [self._key(row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)
        )
        if not rows:
            return False
        await self.write(statements=[(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (utc_text(utcnow()), key_id),
        )])
        return True

    async def count_api_keys(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
        return int(rows[0][0])

    @staticmethod
    def _key(row: Any) -> ApiKey:
        return ApiKey(
            id=row[0], owner=row[1], role=row[2], prefix=row[3], created_at=_parse_ts(row[4]),
            revoked_at=_parse_ts(row[5]) if row[5] else None,
        )
