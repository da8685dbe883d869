"""The store on PostgreSQL through asyncpg: the store of record that the nodes of a cluster share.

It keeps :class:`watui.stores.sqlite.Store`'s promises (see :mod:`watui.stores.base`): writes are
group-committed by one writer task, and a write's future resolves only after its transaction
committed.

**The event log is ordered by commit.** A sequence or identity column hands out ids when a row
is inserted, not when its transaction commits: the transaction that took id 10 can commit after
the one that took id 11, and a reader that saw 11 and resumes after it skips 10 for ever. So
ids come from a one-row counter, ``event_seq``, that each transaction with events bumps with
``UPDATE event_seq SET last = last + n RETURNING last``. The UPDATE takes the row's lock and
holds it until the transaction ends, so a second writer (on this node or another) waits there
until the first has committed and only then gets the next ids: ids are assigned in commit
order. PostgreSQL makes a transaction visible to new snapshots before it releases its locks,
so a reader that sees id N sees every id below it. An advisory lock would serialize the same
way; the counter row also remembers the last id ever given (ids never come back after
retention or a purge) without a ``MAX(id)`` scan. The cost is that event-writing transactions
of all nodes commit one at a time; group commit makes each of them carry many events, and a
batch of events alone is a single statement (counter and rows in one ``WITH``), one round trip.

**Fencing (cluster mode).** With :attr:`PostgresStore.fencing` set, each write transaction
first locks the lease rows of the sessions it touches (``FOR SHARE``) and refuses, alone and
with :class:`~watui.errors.LeaseLost`, a write for a session that another node has claimed
since (see :func:`_may_write` and docs/cluster.md, "Leases and fencing").

Migrations are versioned in ``watui_schema`` and run under an advisory lock, so nodes that
start together migrate once.

**NUL characters.** PostgreSQL ``text`` cannot hold U+0000, while SQLite can and WhatsApp may
send one. The API refuses NUL in what callers send (``422 VALIDATION_ERROR``), but text from the
engine must neither be lost nor fail the write that carries it (and every other write in its
batch): so this store writes U+FFFD (the replacement character) for each NUL in the messages
table and in other modules' statements (a receiver's answer in the webhook attempts log, say).
Event payloads, session documents and webhook bodies are JSON, where a NUL is the escape
``\u0000``: they keep it exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from watui.errors import LeaseLost, StoreUnavailable
from watui.machine import EventType, wants_node
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
from watui.stores.base import Dialect, StoreProtocol
from watui.stores.encoding import payload_json
from watui.stores.group_commit import (
    EventHook,
    GroupCommitWriter,
    QueuedWrite,
    Statement,
    WriteResult,
)
from watui.stores.sqlite import OUTGOING_PROGRESS, Store, hash_key

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x77617475  # "watu": the advisory lock nodes take to migrate one at a time

# Forward migrations; index i brings the schema from version i to i + 1. Never edit one that
# has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE event_seq (
        one  boolean PRIMARY KEY DEFAULT true CHECK (one),
        last bigint NOT NULL
    );
    INSERT INTO event_seq(one, last) VALUES (true, 0);
    CREATE TABLE sessions (
        id    text PRIMARY KEY,
        owner text NOT NULL,
        doc   text NOT NULL,
        seq   bigserial NOT NULL
    );
    CREATE INDEX sessions_owner ON sessions(owner);
    CREATE TABLE events (
        id         bigint PRIMARY KEY,
        type       text NOT NULL,
        session_id text NOT NULL,
        owner      text NOT NULL,
        ts         timestamptz NOT NULL,
        payload    text NOT NULL
    );
    CREATE INDEX events_session ON events(session_id, id);
    CREATE INDEX events_owner ON events(owner, id);
    CREATE TABLE api_keys (
        id         text PRIMARY KEY,
        owner      text NOT NULL,
        role       text NOT NULL CHECK (role IN ('admin', 'user')),
        key_hash   text NOT NULL UNIQUE,
        prefix     text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
    );
    CREATE TABLE messages (
        id         bigserial PRIMARY KEY,
        session_id text NOT NULL,
        direction  text NOT NULL,
        chat       text NOT NULL,
        text       text NOT NULL,
        message_id text,
        status     text NOT NULL,
        error      text,
        ts         timestamptz NOT NULL
    );
    CREATE INDEX messages_session ON messages(session_id, id);
    CREATE INDEX messages_message_id ON messages(session_id, message_id);
    CREATE TABLE webhook_deliveries (
        id               bigserial PRIMARY KEY,
        event_id         bigint NOT NULL,
        session_id       text NOT NULL,
        webhook_id       text NOT NULL UNIQUE,
        url              text NOT NULL,
        secret           text,
        status           text NOT NULL
                         CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz,
        last_status_code integer,
        last_error       text,
        created_at       timestamptz NOT NULL,
        delivered_at     timestamptz
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
    CREATE TABLE webhook_attempts (
        id          bigserial PRIMARY KEY,
        delivery_id bigint NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt     integer NOT NULL,
        ts          timestamptz NOT NULL,
        status_code integer,
        error       text,
        duration_ms double precision NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);
    """,
    # Cluster mode (watui.cluster, docs/cluster.md "Leases and fencing"): the nodes table, the
    # leases with their fencing tokens (from a sequence, so a token is never given twice), and
    # which sessions want a node. The backfill spells out watui.machine.wants_node as it is
    # today; from here on the store's session upsert keeps the column with that function.
    """
    CREATE TABLE nodes (
        node_id      text PRIMARY KEY,
        url          text NOT NULL,
        started_at   timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        capacity     integer NOT NULL,
        sessions     integer NOT NULL DEFAULT 0
    );
    CREATE SEQUENCE lease_token;
    CREATE TABLE leases (
        session_id text PRIMARY KEY,
        owner      text NOT NULL,
        node_id    text NOT NULL,
        token      bigint NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX leases_owner ON leases(owner, expires_at);
    CREATE INDEX leases_node ON leases(node_id, expires_at);
    ALTER TABLE sessions ADD COLUMN wants_node boolean NOT NULL DEFAULT false;
    UPDATE sessions SET wants_node = (doc::jsonb ->> 'status') IN
        ('initializing', 'qr_ready', 'connecting', 'connected')
        OR ((doc::jsonb ->> 'status') = 'disconnected'
            AND coalesce((doc::jsonb ->> 'autostart')::boolean, false));
    CREATE INDEX sessions_wants_node ON sessions(id) WHERE wants_node;
    """,
    # Outbox claims (watui/webhooks/outbox.py): the node sending a row, and until when its
    # claim holds; a claim that ran out (its node died) is taken over by another node.
    """
    ALTER TABLE webhook_deliveries ADD COLUMN claimed_by text;
    ALTER TABLE webhook_deliveries ADD COLUMN claimed_until timestamptz;
    CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries(claimed_by)
        WHERE claimed_by IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_MESSAGE_EVENTS = [EventType.MESSAGE.value, EventType.MESSAGE_STATUS.value]
PURGE_DELETED_SESSION = [
    "DELETE FROM webhook_deliveries WHERE session_id = $1 AND event_id IN"
    " (SELECT id FROM events WHERE session_id = $1 AND type = ANY($2::text[]))",
    "DELETE FROM events WHERE session_id = $1 AND type = ANY($2::text[])",
]
"""Run (with the session id and the message event types) in the transaction that deletes a
session, with its messages: the events carrying their text go, and their deliveries."""

INSERT_EVENTS = """
WITH seq AS (UPDATE event_seq SET last = last + cardinality($1::text[]) RETURNING last),
ins AS (
    INSERT INTO events(id, type, session_id, owner, ts, payload)
    SELECT (SELECT last FROM seq) - cardinality($1::text[]) + e.n, e.type, e.session_id, e.owner,
           e.ts, e.payload
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
         WITH ORDINALITY AS e(type, session_id, owner, ts, payload, n)
)
SELECT last FROM seq
"""
"""A batch's events in one statement: bump the counter (taking its row lock until commit) and
insert the rows numbered up to its new value, in the order given."""

_EVENT_COLUMNS = "id, type, session_id, owner, ts, payload"
_MESSAGE_COLUMNS = "id, session_id, direction, chat, text, message_id, status, error, ts"

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # the connection is closed or broken
    asyncpg.InternalClientError,  # the connection's protocol state is broken (the server hung up)
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory, too many connections
    asyncpg.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
)
"""Errors that mean the database cannot write right now, as opposed to a bad statement (a bug)."""


def _unavailable(exc: Exception, *, outage: bool = False) -> Exception:
    """A failed write as the service reports it: :class:`StoreUnavailable` when the database
    could not write, the error itself otherwise (a bad statement is a bug, not an outage)."""
    if outage or isinstance(exc, _OUTAGES):
        unavailable = StoreUnavailable(
            f"The store cannot write right now ({exc}); nothing was changed. Retry later.",
            details={"reason": str(exc)},
        )
        unavailable.__cause__ = exc
        return unavailable
    return exc


@dataclass(frozen=True, slots=True)
class Committed:
    """What one transaction committed, for the nodes of a cluster to share (the fan-out):
    its events (with their ids), the session snapshots it wrote (the last one of each
    session) and the ids of the sessions it deleted."""

    events: list[Event] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _committed(batch: list[QueuedWrite], results: list[WriteResult]) -> Committed:
    sessions: dict[str, Session] = {}
    deleted: list[str] = []
    for write in batch:
        for session in write.sessions:
            sessions[session.id] = session
        for session_id in write.deleted:  # the transaction deletes after it upserts
            sessions.pop(session_id, None)
            deleted.append(session_id)
    gone = set(deleted)
    return Committed(
        events=[event for result in results for event in result.events],
        sessions=[session for session in sessions.values() if session.id not in gone],
        deleted=deleted,
    )


def _event(row: Any) -> Event:
    return Event(id=row[0], type=EventType(row[1]), session_id=row[2], owner=row[3],
                 timestamp=row[4], payload=json.loads(row[5]))


def _message(r: Any) -> Message:
    return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3], text=r[4],
                   message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=r[8])


NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable(value: Any) -> Any:
    """``value`` as PostgreSQL ``text`` can hold it: a string's NULs become U+FFFD (see the
    module doc); anything else unchanged."""
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) and NUL in value else value


class Fence(Protocol):
    """What the store asks before a write in cluster mode (``watui.cluster.leases.Leases`` is
    one): which node this is, and the fencing token it holds for a session, if any."""

    node_id: str

    def token(self, session_id: str) -> int | None:
        """This node's fencing token for ``session_id``; None when it holds no lease on it."""
        ...


FENCE_ROWS = (
    "SELECT session_id, node_id, token, expires_at > now() FROM leases"
    " WHERE session_id = ANY($1::text[]) ORDER BY session_id FOR SHARE"
)
"""The lease rows of the sessions a write transaction touches, locked until it ends: a claim
(which updates the row) waits for the write to commit, so no claim slips in between the check
and the commit. The locks are shared, so writers on several nodes never wait for each other."""


def _touched(write: QueuedWrite) -> set[str]:
    """The sessions a write changes (its extra ``statements`` are SQL the store cannot read)."""
    touched = {e.session_id for e in write.events}
    touched.update(m.session_id for m in write.messages)
    touched.update(s.id for s in write.sessions)
    touched.update(write.deleted)
    return touched


def _may_write(fence: Fence, session_id: str, lease: tuple[str, int, bool] | None) -> bool:
    """The fencing rule for one session, given its lease row ``(node_id, token, live)``.

    A node holding token T may write only while the row still names it with T (expired but
    not claimed by anyone else is fine: nobody else wrote since). A node holding no token may
    write only when no other node holds a live lease (it creates, or changes a session nobody
    runs)."""
    mine = fence.token(session_id)
    if mine is not None:
        return lease is not None and lease[0] == fence.node_id and lease[1] == mine
    return lease is None or not lease[2] or lease[0] == fence.node_id


class PostgresStore(GroupCommitWriter):
    """Sessions, the commit-ordered event log, messages and API keys in PostgreSQL."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int) -> None:
        super().__init__(max_batch=max_batch)
        self._pool = pool
        self._writer: asyncpg.Connection | None = None
        self.event_hooks: list[EventHook] = []
        self.on_commit: list[Callable[[list[Event]], None]] = []
        self.on_commit_batch: list[Callable[[Committed], None]] = []
        """Called in commit order, right after each transaction that wrote events, sessions
        or deletes, with all of it (cluster fan-out, :mod:`watui.cluster.fanout`)."""
        self.commit_observers: list[Callable[[float], None]] = []
        self.commits = 0
        self.last_committed_id = 0
        self.failing: str | None = None
        self.fencing: Fence | None = None
        """Cluster mode: when set, every write is checked against the lease rows of the
        sessions it touches (see :meth:`_fenced_out`); a write that fails the check fails alone
        with :class:`LeaseLost`. None (single node, tests): no check, no extra round trip."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for the cluster's own tables (leases, nodes)."""
        return self._pool

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_batch: int = 64,
        pool_size: int = 4,
        schema: str | None = None,
    ) -> PostgresStore:
        """Connect, migrate and start the writer. ``schema`` puts the tables in that schema
        (created if missing) instead of ``public``: several stores can share one database."""
        settings = {"search_path": schema} if schema else None
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max(2, pool_size), server_settings=settings
        )
        try:
            async with pool.acquire() as conn:
                await cls._migrate(conn, schema)
        except BaseException:
            await pool.close()
            raise
        store = cls(pool, max_batch=max_batch)
        store.last_committed_id = await store.max_event_id()
        store._start_writer("watui-pg-store-writer")
        return store

    @staticmethod
    async def _migrate(conn: asyncpg.Connection, schema: str | None) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            if schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute("CREATE TABLE IF NOT EXISTS watui_schema (version integer NOT NULL)")
            version = await conn.fetchval("SELECT version FROM watui_schema")
            if version is None:
                version = 0
                await conn.execute("INSERT INTO watui_schema(version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {version} is newer than this watui ({SCHEMA_VERSION})"
                )
            for target in range(version, SCHEMA_VERSION):
                log.info("migrating PostgreSQL schema %d -> %d", target, target + 1)
                await conn.execute(MIGRATIONS[target])
                await conn.execute("UPDATE watui_schema SET version = $1", target + 1)

    async def close(self) -> None:
        """Flush every queued write, then close the pool."""
        if not await self._stop_writer():
            return
        await self._drop_writer_connection()
        await self._pool.close()

    # ---------------------------------------------------------------- writes

    async def _commit(self, batch: list[QueuedWrite]) -> None:
        started = time.perf_counter()
        refused: dict[int, str] = {}
        allowed = batch
        try:
            conn = await self._writer_connection()
            fence = self.fencing
            if fence is not None:  # the check and the writes in one transaction
                async with conn.transaction():
                    refused = await self._fenced_out(conn, fence, batch)
                    allowed = [write for i, write in enumerate(batch) if i not in refused]
                    results = await self._apply(conn, allowed)
            elif self.event_hooks or any(w.messages or w.sessions or w.deleted or w.statements for w in batch):
                async with conn.transaction():
                    results = await self._apply(conn, batch)
            else:  # events alone are one statement, atomic by itself: one round trip
                results = await self._apply(conn, batch)
        except Exception as exc:  # the whole batch fails together; nothing is half-written
            if isinstance(exc, _OUTAGES) or self._writer is None or self._writer.is_closed():
                # Refused, not retried: a connection lost during COMMIT leaves its outcome
                # unknown, and a retry could write the batch twice.
                await self._drop_writer_connection()
                self._fail(batch, exc, outage=True)
                return
            if len(batch) > 1:  # retry each write alone so one bad write cannot fail its neighbours
                for write in batch:
                    await self._commit([write])
                return
            self._fail(batch, exc)
            return
        if self.failing is not None:
            log.warning("store writes succeed again (after: %s)", self.failing)
            self.failing = None
        self.commits += 1
        for observe in self.commit_observers:
            observe(time.perf_counter() - started)
        all_events = [event for result in results for event in result.events]
        if all_events:
            self.last_committed_id = max(self.last_committed_id, all_events[-1].id)
            for callback in self.on_commit:
                try:
                    callback(all_events)
                except Exception:
                    log.exception("on_commit callback failed")
        if self.on_commit_batch:
            committed = _committed(allowed, results)
            if committed.events or committed.sessions or committed.deleted:
                for batch_callback in self.on_commit_batch:
                    try:
                        batch_callback(committed)
                    except Exception:
                        log.exception("on_commit_batch callback failed")
        for write, result in zip(allowed, results, strict=True):
            if not write.future.done():
                write.future.set_result(result)
        for index, session_id in refused.items():
            if not batch[index].future.done():
                batch[index].future.set_exception(LeaseLost(session_id))

    @staticmethod
    async def _fenced_out(conn: asyncpg.Connection, fence: Fence, batch: list[QueuedWrite]) -> dict[int, str]:
        """The writes of ``batch`` that this node may not make (index -> the first session it
        lost), checked against the lease rows locked ``FOR SHARE`` in the caller's transaction."""
        touched = [_touched(write) for write in batch]
        session_ids = sorted(set().union(*touched))
        if not session_ids:
            return {}
        rows = await conn.fetch(FENCE_ROWS, session_ids)
        leases = {row[0]: (row[1], row[2], row[3]) for row in rows}
        lost = {s for s in session_ids if not _may_write(fence, s, leases.get(s))}
        if lost:
            log.warning("refusing writes for sessions this node no longer holds: %s", sorted(lost))
        return {i: min(sessions & lost) for i, sessions in enumerate(touched) if sessions & lost}

    async def _writer_connection(self) -> asyncpg.Connection:
        """The writer keeps one connection (handing it back to the pool after each commit
        would cost a reset round trip every time)."""
        if self._writer is None or self._writer.is_closed():
            self._writer = await self._pool.acquire()
        return self._writer

    async def _drop_writer_connection(self) -> None:
        """After an outage the next commit starts on a fresh connection."""
        conn, self._writer = self._writer, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=1)

    def _fail(self, batch: list[QueuedWrite], exc: Exception, *, outage: bool = False) -> None:
        error = _unavailable(exc, outage=outage)
        if not isinstance(error, StoreUnavailable):
            log.error("store write failed", exc_info=exc)
        else:
            if self.failing is None:  # once per outage, not once per write
                log.error("store writes are failing (%s); each is refused until one succeeds", exc)
            self.failing = str(exc)
        for write in batch:
            if not write.future.done():
                write.future.set_exception(error)

    async def _apply(self, conn: asyncpg.Connection, batch: list[QueuedWrite]) -> list[WriteResult]:
        """Run one batch; ids are taken here, under the counter's lock (see the module doc)."""
        new_events = [new for write in batch for new in write.events]
        next_event = 0
        if new_events:
            next_event = int(await conn.fetchval(
                INSERT_EVENTS,
                [e.type.value for e in new_events], [e.session_id for e in new_events],
                [e.owner for e in new_events], [e.timestamp for e in new_events],
                [payload_json(e.payload) for e in new_events],
            )) - len(new_events) + 1
        message_count = sum(len(write.messages) for write in batch)
        message_ids: list[int] = []
        if message_count:
            message_ids = [row[0] for row in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1)",
                message_count)]
        message_rows: list[tuple[Any, ...]] = []
        session_rows: dict[str, tuple[str, str, str, bool]] = {}
        deleted: list[tuple[str, list[str]]] = []
        extra: list[Statement] = []
        results: list[WriteResult] = []
        for write in batch:
            events: list[Event] = []
            for new in write.events:
                event = Event.committed(new, next_event)
                next_event += 1
                events.append(event)
                for hook in self.event_hooks:
                    extra.extend(hook(event))
            messages: list[Message] = []
            for m in write.messages:
                message = Message(id=message_ids.pop(0), session_id=m.session_id, direction=m.direction,
                                  chat=m.chat, text=m.text, message_id=m.message_id, status=m.status,
                                  error=m.error, timestamp=m.timestamp)
                messages.append(message)
                message_rows.append((message.id, m.session_id, m.direction.value, storable(m.chat),
                                     storable(m.text), storable(m.message_id), m.status.value,
                                     storable(m.error), m.timestamp))
            for session in write.sessions:
                session_rows[session.id] = (session.id, session.owner, session.model_dump_json(),
                                            wants_node(session.status, session.autostart))
            for session_id in write.deleted:
                session_rows.pop(session_id, None)
                deleted.append((session_id, _MESSAGE_EVENTS))
            extra.extend(write.statements)
            results.append(WriteResult(events, messages))
        if message_rows:
            await conn.executemany(
                f"INSERT INTO messages({_MESSAGE_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                message_rows)
        if session_rows:
            await conn.executemany(
                "INSERT INTO sessions(id, owner, doc, wants_node) VALUES ($1,$2,$3,$4) ON CONFLICT (id)"
                " DO UPDATE SET owner = EXCLUDED.owner, doc = EXCLUDED.doc, wants_node = EXCLUDED.wants_node",
                list(session_rows.values()))
        if deleted:
            await conn.executemany("DELETE FROM sessions WHERE id = $1", [(d[0],) for d in deleted])
            for sql in PURGE_DELETED_SESSION:
                await conn.executemany(sql, deleted)
            await conn.executemany("DELETE FROM messages WHERE session_id = $1", [(d[0],) for d in deleted])
        for sql, params in extra:
            await conn.execute(sql, *[storable(p) for p in params])
        return results

    # ---------------------------------------------------------------- reads

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read in PostgreSQL's dialect (``$1`` placeholders), for modules with their own tables."""
        return list(await self._pool.fetch(sql, *params))

    async def load_sessions(self) -> list[Session]:
        rows = await self.fetchall("SELECT doc FROM sessions ORDER BY seq")
        return [Session.model_validate_json(row[0], context={"stored": True}) for row in rows]

    async def load_sessions_by_id(self, session_ids: Sequence[str]) -> tuple[list[Session], list[str]]:
        """The stored snapshots of ``session_ids`` (in that order), and the ids that have none
        (deleted): how a cluster node refreshes sessions another node changed."""
        rows = await self.fetchall("SELECT id, doc FROM sessions WHERE id = ANY($1::text[])", (list(session_ids),))
        found = {row[0]: row[1] for row in rows}
        sessions = [
            Session.model_validate_json(found[sid], context={"stored": True})
            for sid in session_ids if sid in found
        ]
        return sessions, [sid for sid in session_ids if sid not in found]

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
        where = ["id > $1"]
        params: list[Any] = [after_id]
        if owner is not None:
            params.append(owner)
            where.append(f"owner = ${len(params)}")
        if session_id is not None:
            params.append(session_id)
            where.append(f"session_id = ${len(params)}")
        if types is not None:
            params.append([t.value for t in types])
            where.append(f"type = ANY(${len(params)}::text[])")
        params.append(limit)
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)}"
            f" ORDER BY id LIMIT ${len(params)}",
            params,
        )
        return [_event(row) for row in rows]

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """A session's latest events, oldest first."""
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = $1 ORDER BY id DESC LIMIT $2",
            (session_id, limit),
        )
        return [_event(row) for row in reversed(rows)]

    async def max_event_id(self) -> int:
        """The newest committed id of the whole cluster (the counter: a read never waits for
        its lock, and sees only committed values)."""
        newest = int(await self._pool.fetchval("SELECT last FROM event_seq"))
        self.last_committed_id = max(self.last_committed_id, newest)
        return newest

    async def oldest_event_id(self) -> int:
        """The oldest id the log still keeps; one past the newest if it keeps none."""
        oldest = await self._pool.fetchval("SELECT MIN(id) FROM events")
        return int(oldest) if oldest is not None else await self.max_event_id() + 1

    async def count_events(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM events"))

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Message], int]:
        """A session's messages, newest first, and how many there are in all."""
        rows = await self.fetchall(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            (session_id, limit, offset),
        )
        total = await self._pool.fetchval("SELECT COUNT(*) FROM messages WHERE session_id = $1", session_id)
        return [_message(r) for r in rows], int(total)

    async def find_message(self, session_id: str, message_id: str) -> Message | None:
        """The session's newest message with WhatsApp's id ``message_id``, if stored."""
        rows = await self.fetchall(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND message_id = $2"
            " ORDER BY id DESC LIMIT 1",
            (session_id, message_id),
        )
        return _message(rows[0]) if rows else None

    async def update_message_status(
        self,
        session_id: str,
        message_id: str,
        status: MessageStatus,
        *,
        events: Sequence[NewEvent] = (),
    ) -> WriteResult:
        """Move a sent message's status forward, never backwards (the guard is in the UPDATE)."""
        earlier = [s.value for s in OUTGOING_PROGRESS[: OUTGOING_PROGRESS.index(status)]]
        return await self.write(
            events=events,
            statements=[(
                "UPDATE messages SET status = $1 WHERE session_id = $2 AND message_id = $3"
                " AND direction = 'out' AND status = ANY($4::text[])",
                (status.value, session_id, message_id, earlier),
            )],
        )

    # ---------------------------------------------------------------- API keys

    async def create_api_key(self, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """Make a key; the secret is returned once and only its hash is stored."""
        owner = owner.strip()
        if not owner:
            raise ValueError("owner must not be blank")
        secret = "wat_" + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(6), owner=owner, role="admin" if admin else "user",
                     prefix=secret[:10], created_at=utcnow())
        await self.write(statements=[(
            "INSERT INTO api_keys(id, owner, role, key_hash, prefix, created_at) VALUES ($1,$2,$3,$4,$5,$6)",
            (key.id, key.owner, key.role, hash_key(secret), key.prefix, key.created_at),
        )])
        return key, secret

    async def find_api_key(self, secret: str) -> ApiKey | None:
        rows = await self.fetchall(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys"
            " WHERE key_hash = $1 AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return self._key(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.fetchall(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [self._key(row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        if not await self.fetchall("SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL", (key_id,)):
            return False
        await self.write(statements=[(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", (utcnow(), key_id),
        )])
        return True

    async def count_api_keys(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"))

    @staticmethod
    def _key(row: Any) -> ApiKey:
        revoked: datetime | None = row[5]
        return ApiKey(id=row[0], owner=row[1], role=row[2], prefix=row[3], created_at=row[4],
                      revoked_at=revoked)


def _conforms(sqlite: Store, postgres: PostgresStore) -> tuple[StoreProtocol, StoreProtocol]:
    """Never called: mypy checks here that both backends keep the protocol."""
    return sqlite, postgres
