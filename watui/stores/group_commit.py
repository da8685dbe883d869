"""The write queue both stores share: callers queue atomic writes and wait for their commit;
one writer task takes whatever is queued (up to ``max_batch`` writes) into each transaction,
so a burst of a thousand writes costs a handful of commits.

A write is cheap to queue: a slotted record and a future, appended to a deque. The writer
task sleeps on a future of its own only while the queue is empty, so a busy store never pays
for a wake-up per write. Backends implement :meth:`GroupCommitWriter._commit` for one batch,
or override :meth:`GroupCommitWriter._write_loop` to overlap batches (the SQLite store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from watui.errors import StoreUnavailable
from watui.models import Event, Message, NewEvent, NewMessage, Session

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[Any]]
EventHook = Callable[[Event], Iterable[Statement]]
"""Called for each event while its transaction is being assembled; the statements it returns
commit atomically with the event (the webhook outbox uses this)."""


@dataclass(slots=True)
class WriteResult:
    events: list[Event]
    messages: list[Message]


@dataclass(slots=True)
class QueuedWrite:
    """One atomic write waiting for its transaction, and the future its caller awaits."""

    events: Sequence[NewEvent]
    sessions: Sequence[Session]
    deleted: Sequence[str]
    messages: Sequence[NewMessage]
    statements: Sequence[Statement]
    future: asyncio.Future[WriteResult]


class StoreClosed(StoreUnavailable):
    """The store is closed (the process is shutting down)."""

    def __init__(self, message: str = "the store is closed") -> None:
        super().__init__(message)


class GroupCommitWriter:
    """Queues atomic writes and commits them in batches, in queue order."""

    def __init__(self, *, max_batch: int) -> None:
        self._max_batch = max_batch
        self._pending: deque[QueuedWrite] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        """Writes are refused (closing, or the writer died)."""
        self._stopped = False
        self._writer_failure: str | None = None

    def _start_writer(self, name: str) -> None:
        self._writer_task = asyncio.create_task(self._write_loop(), name=name)
        self._writer_task.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """If the writer task died (a bug), refuse every write from now on instead of letting
        its callers wait for ever."""
        if task.cancelled() or task.exception() is None:
            return
        log.critical("the store's writer failed; every write is refused", exc_info=task.exception())
        self._closed = True
        self._writer_failure = f"its writer task failed: {task.exception()!r}"
        error = StoreUnavailable("The store's writer failed; nothing more can be written. Restart watui.")
        while self._pending:
            write = self._pending.popleft()
            if not write.future.done():
                write.future.set_exception(error)

    async def _stop_writer(self) -> bool:
        """Refuse new writes and flush the queued ones; False if it was stopped before (the
        caller closes its connections only once). A writer that died was not stopped."""
        if self._stopped:
            return False
        self._stopped = self._closed = True
        self._wake()
        if self._writer_task is not None:
            with contextlib.suppress(Exception):  # it died: _writer_ended told its writes
                await self._writer_task
        return True

    @property
    def closed(self) -> bool:
        """Whether the store was closed (writes are refused from then on)."""
        return self._closed

    @property
    def broken(self) -> str | None:
        """Why the store cannot write again until watui restarts (its writer died), or None."""
        return self._writer_failure

    async def write(
        self,
        *,
        events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
        deleted: Sequence[str] = (),
        messages: Sequence[NewMessage] = (),
        statements: Sequence[Statement] = (),
    ) -> WriteResult:
        """Queue one atomic write and wait until it has committed.

        The sequences are copied, so the caller may reuse them at once."""
        return await self._enqueue(
            tuple(events), tuple(sessions), tuple(deleted), tuple(messages), tuple(statements)
        )

    async def append(self, events: Sequence[NewEvent], *, sessions: Sequence[Session] = ()) -> list[Event]:
        return (await self._enqueue(tuple(events), tuple(sessions), (), (), ())).events

    def _enqueue(
        self,
        events: Sequence[NewEvent],
        sessions: Sequence[Session],
        deleted: Sequence[str],
        messages: Sequence[NewMessage],
        statements: Sequence[Statement],
    ) -> asyncio.Future[WriteResult]:
        """Queue a write; the future resolves once it has committed (or fails with why not)."""
        if self._closed:
            raise StoreClosed()
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append(QueuedWrite(events, sessions, deleted, messages, statements, future))
        if self._wakeup is not None:
            self._wake()
        return future

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _next_batch(self) -> list[QueuedWrite] | None:
        """The next writes to commit together, oldest first, waiting while there are none;
        None once the store is closed and every queued write has been taken."""
        pending = self._pending
        while not pending:
            if self._closed:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._take_batch()

    def _take_batch(self) -> list[QueuedWrite]:
        """Up to ``max_batch`` queued writes, oldest first, without waiting (maybe none)."""
        pending = self._pending
        if len(pending) <= self._max_batch:
            batch = list(pending)
            pending.clear()
            return batch
        return [pending.popleft() for _ in range(self._max_batch)]

    async def _write_loop(self) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._commit(batch)

    async def _commit(self, batch: list[QueuedWrite]) -> None:
        raise NotImplementedError
