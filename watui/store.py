"""The store: SQLite through aiosqlite, in WAL mode, with a versioned schema.

Writes go through one writer task that *group-commits*: whatever is queued while a commit is
in flight goes into the next transaction, so a burst of a thousand events costs a handful of
fsyncs instead of a thousand. A write's future resolves only after its transaction has
committed, so anything reported as written survives a ``kill -9``.

Reads use a second connection. In WAL mode it never sees a transaction that has not
committed, so a reader can never hand out an event that a crash could still take back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from watui.datadir import private_database_files
from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.models import (
    ApiKey,
    Event,
    Message,
    MessageDirection,
    MessageStatus,
    NewEvent,
    Session,
    utcnow,
)

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[Any]]
EventHook = Callable[[Event], Iterable[Statement]]
"""Called for each event while its transaction is being assembled; the statements it returns
commit atomically with the event (the webhook outbox uses this)."""

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

_MESSAGE_EVENTS = f"('{EventType.MESSAGE.value}', '{EventType.MESSAGE_STATUS.value}')"
PURGE_DELETED_SESSION = [
    "DELETE FROM webhook_deliveries WHERE session_id = ?1 AND event_id IN"
    f" (SELECT id FROM events WHERE session_id = ?1 AND type IN {_MESSAGE_EVENTS})",
    f"DELETE FROM events WHERE session_id = ? AND type IN {_MESSAGE_EVENTS}",
    "DELETE FROM messages WHERE session_id = ?",
]
"""Run (with the session id) in the transaction that deletes a session."""


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


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


@dataclass
class NewMessage:
    session_id: str
    direction: MessageDirection
    chat: str
    text: str
    message_id: str | None
    status: MessageStatus
    error: str | None = None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass
class WriteResult:
    events: list[Event]
    messages: list[Message]


@dataclass
class _Write:
    events: list[NewEvent]
    sessions: list[Session]
    deleted: list[str]
    messages: list[NewMessage]
    statements: list[Statement]
    future: asyncio.Future[WriteResult]


_json = json.JSONEncoder(separators=(",", ":"), default=str).encode
"""An event payload as stored: compact JSON (one encoder, not one per ``json.dumps`` call)."""


@dataclass
class _Rows:
    """One transaction's rows, assembled on the event loop and written by :meth:`write` on
    the connection's thread."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    deleted: list[tuple[str]] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def write(self, conn: sqlite3.Connection) -> None:
        """The whole transaction: all of it commits, or it is rolled back and the error raised."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.events:
                conn.executemany(
                    "INSERT INTO events(id, type, session_id, owner, ts, payload) VALUES (?,?,?,?,?,?)",
                    self.events,
                )
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
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise


class StoreClosed(StoreUnavailable):
    """The store is closed (the process is shutting down)."""

    def __init__(self, message: str = "the store is closed") -> None:
        super().__init__(message)


class GroupCommitWriter:
    """The write queue both stores share: callers queue atomic writes; one writer task takes
    whatever is queued (up to ``max_batch``) into each transaction, so a burst of writes costs
    a handful of commits. Backends implement :meth:`_commit` for one batch."""

    def __init__(self, *, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False

    def _start_writer(self, name: str) -> None:
        self._writer_task = asyncio.create_task(self._write_loop(), name=name)

    async def _stop_writer(self) -> bool:
        """Refuse new writes and flush the queued ones; False if it was stopped before."""
        if self._closed:
            return False
        self._closed = True
        await self._queue.put(None)
        if self._writer_task is not None:
            await self._writer_task
        return True

    @property
    def closed(self) -> bool:
        """Whether the store was closed (writes are refused from then on)."""
        return self._closed

    async def write(
        self,
        *,
        events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
        deleted: Sequence[str] = (),
        messages: Sequence[NewMessage] = (),
        statements: Sequence[Statement] = (),
    ) -> WriteResult:
        """Queue one atomic write and wait until it has committed."""
        if self._closed:
            raise StoreClosed()
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(
            _Write(list(events), list(sessions), list(deleted), list(messages), list(statements), future)
        )
        return await future

    async def append(self, events: Sequence[NewEvent], *, sessions: Sequence[Session] = ()) -> list[Event]:
        return (await self.write(events=events, sessions=sessions)).events

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list[_Write]) -> None:
        raise NotImplementedError


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


class Store(GroupCommitWriter):
    """Sessions, the append-only event log, API keys and messages (the SQLite backend of
    :class:`watui.stores.base.StoreProtocol`)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"
    """The SQL that ``fetchall`` and ``write(statements=...)`` take."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        max_batch: int,
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.path = path
        self._w = writer
        self._r = reader
        self._next_event_id = 1
        self._next_message_id = 1
        self.event_hooks: list[EventHook] = []
        self.on_commit: list[Callable[[list[Event]], None]] = []
        """Called in commit order, right after each transaction, with its events (the bus)."""
        self.commits = 0
        self.commit_observers: list[Callable[[float], None]] = []
        """Called with each transaction's duration in seconds (``GET /metrics``)."""
        """Transactions committed so far (the benchmark reads it)."""
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
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute(f"PRAGMA synchronous={synchronous}")
            await writer.execute("PRAGMA foreign_keys=ON")
            await writer.execute("PRAGMA busy_timeout=5000")
            await cls._migrate(writer)
        except BaseException:
            await writer.close()
            raise
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        reader.row_factory = aiosqlite.Row
        store = cls(path, writer, reader, max_batch=max_batch)
        await store._load_counters()
        store.last_committed_id = await store.max_event_id()
        store._start_writer("watui-store-writer")
        return store

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this watui ({SCHEMA_VERSION})"
            )
        for target in range(version, SCHEMA_VERSION):
            log.info("migrating store schema %d -> %d", target, target + 1)
            await conn.executescript(
                "BEGIN IMMEDIATE;\n" + MIGRATIONS[target] + f"\nPRAGMA user_version={target + 1};\nCOMMIT;"
            )

    async def _load_counters(self) -> None:
        # AUTOINCREMENT's sqlite_sequence remembers the highest id ever used, so ids are never
        # reused even if rows were removed.
        seq = {name: value for name, value in await self._w.execute_fetchall(
            "SELECT name, seq FROM sqlite_sequence"
        )}
        for table in ("events", "messages"):
            async with self._w.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}") as cur:
                row = await cur.fetchone()
            seq[table] = max(int(seq.get(table, 0)), int(row[0]) if row else 0)
        self._next_event_id = seq["events"] + 1
        self._next_message_id = seq["messages"] + 1

    async def close(self) -> None:
        """Flush every queued write, then close both connections."""
        if not await self._stop_writer():
            return
        with contextlib.suppress(Exception):
            await self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await self._w.close()
        await self._r.close()

    @property
    def last_event_id(self) -> int:
        """The id of the last event handed to the writer (committed or about to be)."""
        return self._next_event_id - 1

    # ---------------------------------------------------------------- writes

    async def _commit(self, batch: list[_Write]) -> None:
        # Assembled on the event loop (the hooks read the manager's state, and ids are given
        # here, in queue order), then written in one call on the connection's thread.
        rows = _Rows()
        results: list[WriteResult] = []
        next_event, next_message = self._next_event_id, self._next_message_id
        all_events: list[Event] = []
        for write in batch:
            events: list[Event] = []
            for new in write.events:
                event = Event(
                    id=next_event,
                    type=new.type,
                    session_id=new.session_id,
                    owner=new.owner,
                    timestamp=new.timestamp,
                    payload=new.payload,
                )
                next_event += 1
                events.append(event)
                rows.events.append(
                    (event.id, event.type.value, event.session_id, event.owner, _ts(event.timestamp),
                     _json(event.payload))
                )
                for hook in self.event_hooks:
                    rows.statements.extend(hook(event))
            messages: list[Message] = []
            for m in write.messages:
                message = Message(
                    id=next_message, session_id=m.session_id, direction=m.direction, chat=m.chat,
                    text=m.text, message_id=m.message_id, status=m.status, error=m.error,
                    timestamp=m.timestamp,
                )
                next_message += 1
                messages.append(message)
                rows.messages.append(
                    (message.id, m.session_id, m.direction.value, m.chat, m.text, m.message_id,
                     m.status.value, m.error, _ts(m.timestamp))
                )
            for session in write.sessions:
                rows.sessions[session.id] = (session.id, session.owner, session.model_dump_json())
            for session_id in write.deleted:
                rows.sessions.pop(session_id, None)
                rows.deleted.append((session_id,))
            rows.statements.extend(write.statements)
            results.append(WriteResult(events, messages))
            all_events.extend(events)
        started = time.perf_counter()
        try:
            await self._on_writer_thread(rows.write)
        except Exception as exc:  # the whole batch failed together; nothing is half-written
            # Retry each write alone so one bad write cannot fail its neighbours.
            if len(batch) > 1:
                for write in batch:
                    await self._commit([write])
                return
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
            return
        if self.failing is not None:
            log.warning("store writes succeed again (after: %s)", self.failing)
            self.failing = None
        self.commits += 1
        for observe in self.commit_observers:
            observe(time.perf_counter() - started)
        self._next_event_id, self._next_message_id = next_event, next_message
        if all_events:
            self.last_committed_id = all_events[-1].id
            for callback in self.on_commit:
                try:
                    callback(all_events)
                except Exception:
                    log.exception("on_commit callback failed")
        for write, result in zip(batch, results, strict=True):
            if not write.future.done():
                write.future.set_result(result)

    async def _on_writer_thread(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``fn`` with the writer's ``sqlite3`` connection on aiosqlite's own thread, in
        one hop. Each public aiosqlite call is a hop of its own (a wake-up of that thread, then
        of the event loop), and a transaction made of separate calls paid one per statement:
        under load those hops, not SQLite, were most of a commit's time. ``_execute`` and
        ``_conn`` are what aiosqlite's own methods are built on (stable since 0.17)."""
        writer = self._w
        await writer._execute(lambda: fn(writer._conn))

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
            (key.id, key.owner, key.role, hash_key(secret), key.prefix, _ts(key.created_at)),
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
            (_ts(utcnow()), key_id),
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
