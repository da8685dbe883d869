"""The PostgreSQL store's write path: the connection pool, the group-commit writer that turns
each batch of queued writes into one transaction, and what it tells its listeners afterwards.

A write's future resolves only after its transaction committed (the promise of
:mod:`watui.stores.base`). The store's other parts (:mod:`watui.stores.postgres_log`,
:mod:`watui.stores.postgres_messages`, :mod:`watui.stores.postgres_api_keys`) build on
:class:`PostgresWriter` and read through its :meth:`~PostgresWriter.fetchall`.

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

**Fencing (cluster mode).** With :attr:`PostgresWriter.fencing` set, each write transaction
first checks the lease rows of the sessions it touches (:mod:`watui.stores.postgres_fencing`).

**NUL characters.** PostgreSQL ``text`` cannot hold U+0000, while SQLite can and WhatsApp may
send one. The API refuses NUL in what callers send (``422 VALIDATION_ERROR``), but text from the
engine must neither be lost nor fail the write that carries it (and every other write in its
batch): so this store writes U+FFFD (the replacement character) for each NUL in the messages
table and in other modules' statements (a receiver's answer in the webhook attempts log, say).
Event payloads, session documents and webhook bodies are JSON, where a NUL is the escape
``\\u0000``: they keep it exactly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from watui.errors import Conflict, LeaseLost, StoreUnavailable
from watui.machine import EventType, wants_node
from watui.models import Event, Message, Session, name_key
from watui.stores.encoding import payload_json
from watui.stores.group_commit import (
    EventHook,
    GroupCommitWriter,
    QueuedWrite,
    Statement,
    WriteResult,
)
from watui.stores.outages import OUTAGES, unavailable
from watui.stores.postgres_fencing import Fence, fenced_out

# The store's records keep one logger name whatever module they come from.
log = logging.getLogger("watui.stores.postgres")

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

MESSAGE_COLUMNS = "id, session_id, direction, chat, text, message_id, status, error, ts, type, details"

_OUTAGES = OUTAGES


def _name_taken(batch: list[QueuedWrite], exc: Exception) -> Conflict | None:
    """A write refused because another session of the owner has the name (one a node wrote
    that this node had not seen yet): ``409``, as the node's own check answers."""
    if not (isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == NAME_INDEX):
        return None
    names = [s.name for write in batch for s in write.sessions]
    named = f" named {names[0]!r}" if len(names) == 1 else ""
    return Conflict(f"A session{named} already exists (created on another node)",
                    details={"name": names[0]} if len(names) == 1 else {})


def _unavailable(exc: Exception, *, outage: bool = False) -> Exception:
    """A failed write as the service reports it: :class:`StoreUnavailable` when the database
    could not write, the error itself otherwise (a bad statement is a bug, not an outage)."""
    if outage or isinstance(exc, _OUTAGES):
        return unavailable(exc)
    return exc


UPSERT_SESSIONS = """
INSERT INTO sessions AS s (id, owner, doc, wants_node, name_key) VALUES ($1,$2,$3,$4,$5)
ON CONFLICT (id) DO UPDATE
SET owner = EXCLUDED.owner, doc = EXCLUDED.doc, wants_node = EXCLUDED.wants_node,
    name_key = CASE WHEN s.name_key IS NULL AND s.doc::jsonb ->> 'name' = EXCLUDED.doc::jsonb ->> 'name'
                    THEN NULL ELSE EXCLUDED.name_key END
"""
"""A session snapshot, with its name's key: the unique index ``sessions_owner_name`` makes
names unique per owner across the cluster (two nodes creating one name at once: the second
commit is refused with ``409``). A session of an old database whose name another already had
keeps no key until it is renamed."""

NAME_INDEX = "sessions_owner_name"


def _alive(conn: asyncpg.Connection | None) -> bool:
    """The writer's connection can still be used. One the server closed (a restart, an
    outage) was handed back to the pool by asyncpg itself: its proxy then refuses every call,
    ``is_closed()`` included."""
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


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


NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable(value: Any) -> Any:
    """``value`` as PostgreSQL ``text`` can hold it: a string's NULs become U+FFFD (see the
    module doc); anything else unchanged."""
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) and NUL in value else value


class PostgresWriter(GroupCommitWriter):
    """The pool and the group-commit writer of :class:`~watui.stores.postgres.PostgresStore`,
    with the state its listeners and the cluster set (hooks, callbacks, fencing)."""

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
        sessions it touches (see :func:`~watui.stores.postgres_fencing.fenced_out`); a write
        that fails the check fails alone with :class:`LeaseLost`. None (single node, tests): no
        check, no extra round trip."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for the cluster's own tables (leases, nodes)."""
        return self._pool

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read in PostgreSQL's dialect (``$1`` placeholders), for modules with their own tables."""
        return list(await self._pool.fetch(sql, *params))

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
                    refused = await fenced_out(conn, fence, batch)
                    allowed = [write for i, write in enumerate(batch) if i not in refused]
                    results = await self._apply(conn, allowed)
            elif self.event_hooks or any(w.messages or w.sessions or w.deleted or w.statements for w in batch):
                async with conn.transaction():
                    results = await self._apply(conn, batch)
            else:  # events alone are one statement, atomic by itself: one round trip
                results = await self._apply(conn, batch)
        except Exception as exc:  # the whole batch fails together; nothing is half-written
            if isinstance(exc, _OUTAGES) or not _alive(self._writer):
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

    async def _writer_connection(self) -> asyncpg.Connection:
        """The writer keeps one connection: a commit never waits for one from the pool."""
        if not _alive(self._writer):
            self._writer = await self._pool.acquire()
        return self._writer

    async def _drop_writer_connection(self) -> None:
        """After an outage the next commit starts on a fresh connection."""
        conn, self._writer = self._writer, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=1)

    def _fail(self, batch: list[QueuedWrite], exc: Exception, *, outage: bool = False) -> None:
        error = _name_taken(batch, exc) or _unavailable(exc, outage=outage)
        if isinstance(error, Conflict):
            for write in batch:
                if not write.future.done():
                    write.future.set_exception(error)
            return
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
        session_rows: dict[str, tuple[str, str, str, bool, str]] = {}
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
                message = Message(id=message_ids.pop(0), **m.fields())
                messages.append(message)
                message_rows.append((message.id, m.session_id, m.direction.value, storable(m.chat),
                                     storable(m.text), storable(m.message_id), m.status.value,
                                     storable(m.error), m.timestamp, m.type.value, m.details))
            for session in write.sessions:
                session_rows[session.id] = (session.id, session.owner, session.model_dump_json(),
                                            wants_node(session.status, session.autostart), name_key(session.name))
            for session_id in write.deleted:
                session_rows.pop(session_id, None)
                deleted.append((session_id, _MESSAGE_EVENTS))
            extra.extend(write.statements)
            results.append(WriteResult(events, messages))
        if message_rows:
            await conn.executemany(
                f"INSERT INTO messages({MESSAGE_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                message_rows)
        if session_rows:
            await conn.executemany(UPSERT_SESSIONS, list(session_rows.values()))
        if deleted:
            await conn.executemany("DELETE FROM sessions WHERE id = $1", [(d[0],) for d in deleted])
            for sql in PURGE_DELETED_SESSION:
                await conn.executemany(sql, deleted)
            await conn.executemany("DELETE FROM messages WHERE session_id = $1", [(d[0],) for d in deleted])
            await conn.executemany("DELETE FROM sent_keys WHERE session_id = $1", [(d[0],) for d in deleted])
        for sql, params in extra:
            await conn.execute(sql, *[storable(p) for p in params])
        return results
