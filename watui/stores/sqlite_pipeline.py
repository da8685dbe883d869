"""The SQLite store's write path: the group-commit queue's batches assembled into transactions
on the event loop (ids, rows, the event hooks' statements) and handed to the writer process
(:mod:`watui.stores.sqlite_writer`), up to :data:`PIPELINE_DEPTH` at once, then settled in
commit order; a batch that fails is tried again write by write, and what cannot be written is
refused (:class:`~watui.errors.StoreUnavailable` when SQLite cannot write right now).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watui.errors import StoreUnavailable
from watui.models import Event, Message, NewMessage
from watui.stores.encoding import payload_json, utc_text
from watui.stores.group_commit import EventHook, GroupCommitWriter, QueuedWrite, WriteResult
from watui.stores.sqlite_writer import SqliteWriter, TransactionRows, TransactionSkipped

# The store's records keep one logger name whatever module they come from: watui.logs
# throttles it (a failing disk must not flood the log), and operators filter on it.
log = logging.getLogger("watui.stores.sqlite")


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


class PipelinedWriter(GroupCommitWriter):
    """The SQLite store's writes: a :class:`GroupCommitWriter` that assembles each batch on the
    event loop while the ones before it commit in the writer process."""

    def __init__(self, writer: SqliteWriter, *, max_batch: int) -> None:
        super().__init__(max_batch=max_batch)
        self.writer = writer
        """The process every write goes through, with a connection of its own."""
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

    @property
    def broken(self) -> str | None:
        """Why the store cannot write again until watui restarts (its writer task or writer
        process died), or None."""
        if (failure := super().broken) is not None:
            return failure
        return f"its writer process ended ({self.writer.failure})" if self.writer.failure else None

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
            messages.append(Message(id=next_message, **m.fields()))
            rows.messages.append(
                (next_message, m.session_id, m.direction.value, m.chat, m.text, m.message_id,
                 m.status.value, m.error, utc_text(m.timestamp), m.type.value, m.details)
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
