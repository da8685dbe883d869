"""Pacing: at most ``settings.send_rate`` messages a minute leave a session, in order.

A send to a paced session is checked and its file kept as for any send, then stored as an
outgoing message with status ``pending`` (and its ``message`` event) and answered at once
(``202``). The session's queue holds only the stored rows' ids; one task per session with a
non-empty queue sends the oldest when its turn comes and settles its row: ``sent`` with
WhatsApp's id, or ``failed`` with the engine's error, in one write with the session's
counters and a ``message_status`` event that names the row (``id``).

- **Spacing.** After each send the next waits ``60 / rate`` seconds times a uniform factor
  in [0.7, 1.3] (the jitter: no fixed beat for WhatsApp to spot, the average rate exact). The
  first send after a quiet spell goes at once.
- **Warm-up.** ``settings.warmup`` ramps the rate in a straight line from ``start_rate`` on
  the day the session was created to ``send_rate`` after ``days`` days (:func:`rate_now`).
- **The cap.** A queue holds ``WATUI_SEND_QUEUE_LIMIT`` sends; one more is
  ``429 SEND_QUEUE_FULL`` with ``Retry-After`` (when the next slot frees).
- **Nothing lost.** The queue is the stored ``pending`` rows, so a restart (or, in a cluster,
  the node that takes the session over) sends them, in order, once the session is connected
  again. A queue waits while its session is not connected. Turning pacing off sends what is
  queued at once, in order; a send meanwhile queues behind it. A session that is no longer
  linked (logged out) fails what it still had queued. Across a node's death a paced send is
  at least once: a node that sent one and died before recording it leaves it ``pending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from watui.clock import Clock
from watui.config import Settings
from watui.engines.base import EngineSession, MediaFile, Outgoing
from watui.errors import LeaseLost, NodeUnavailable, SendQueueFull
from watui.machine import EventType, Status
from watui.manager import media
from watui.manager.journal import Journal
from watui.manager.registry import Registry
from watui.manager.runtime import Supervisor
from watui.media.intake import staged_path
from watui.models import (
    Message,
    MessageDirection,
    MessageStatus,
    MessageType,
    NewEvent,
    NewMessage,
    Session,
    SessionSettings,
)

log = logging.getLogger(__name__)

JITTER = 0.3
"""Each gap is the mean gap times a uniform factor in [1 - JITTER, 1 + JITTER]."""

Deliver = Callable[[EngineSession, str, Outgoing], Awaitable[tuple[str | None, str | None]]]
"""Hand one message to the engine: (WhatsApp's message id, None) or (None, the error)."""


def rate_now(settings: SessionSettings, created_at: datetime, now: datetime) -> float | None:
    """The session's send rate at ``now`` in messages a minute (None: not paced)."""
    rate = settings.send_rate
    if rate is None:
        return None
    warmup = settings.warmup
    if warmup is None:
        return float(rate)
    start = min(warmup.start_rate, rate)
    done = (now - created_at).total_seconds() / (warmup.days * 86_400)
    return start + (rate - start) * min(max(done, 0.0), 1.0)


def gap(rate: float | None, rng: random.Random) -> float:
    """Seconds until the next send at ``rate`` messages a minute, jittered (0: not paced)."""
    if rate is None:
        return 0.0
    return 60.0 / rate * rng.uniform(1 - JITTER, 1 + JITTER)


class Pacer:
    """The pacing queues of the sessions this process runs."""

    def __init__(
        self, settings: Settings, clock: Clock, registry: Registry, journal: Journal,
        supervisor: Supervisor, deliver: Deliver,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = registry
        self.journal = journal
        self.supervisor = supervisor
        self.deliver = deliver
        self.rng = random.Random()
        self.queues: dict[str, deque[int]] = {}
        """Per session, the ids of its stored pending messages, oldest first."""
        self.next_at: dict[str, float] = {}
        """Per session, the clock's monotonic time before which its next send waits."""
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.stored: set[str] = set()
        """Sessions whose pending rows in the store have not been loaded yet."""
        self.shared_store = False
        """Cluster mode: other nodes queue too, so a session taken over is looked up once."""
        self._looked_up: set[str] = set()
        self._loading: set[str] = set()
        """Sessions whose older pending rows are being read: nothing of theirs goes meanwhile,
        so a send made now cannot overtake them."""
        self._busy: set[str] = set()
        """Sessions whose queue is sending or recording now (not waiting for its turn)."""
        self._quiet = asyncio.Event()
        self._quiet.set()

    # ---------------------------------------------------------------- start-up and hooks

    async def open(self) -> None:
        """Learn which sessions have sends queued from before (one indexed query)."""
        self.stored = set(await self.journal.store.pending_sessions())

    def paces(self, session: Session) -> bool:
        """Whether a send to ``session`` goes through its queue (paced, or queue not empty)."""
        sid = session.id
        return (session.settings.send_rate is not None or bool(self.queues.get(sid))
                or sid in self.stored or sid in self._loading)

    def queued(self, session_id: str) -> int:
        return len(self.queues.get(session_id, ()))

    def on_change(self, session: Session) -> None:
        """The journal's hook: a session connected (its queue may go on), or unlinked."""
        sid = session.id
        if session.status is Status.CONNECTED:
            if self.queues.get(sid):
                if session.settings.send_rate is None:
                    self._unpace(sid)
                self._kick(sid)
            elif sid in self.stored or (self.shared_store and sid not in self._looked_up
                                        and sid in self.supervisor.runtimes):
                self.stored.discard(sid)
                self._looked_up.add(sid)
                self._loading.add(sid)
                self.supervisor.in_background(self._load(sid))
        elif not session.linked and (self.queues.get(sid) or sid in self.stored):
            self.stored.discard(sid)
            self.supervisor.in_background(self._fail_queued(sid, "the session was logged out before it was sent"))

    def _unpace(self, session_id: str) -> None:
        """Pacing turned off: what waits goes now (a queue waiting for its turn stops waiting;
        one that is sending goes on at once after it)."""
        if self.next_at.pop(session_id, None) is None or session_id in self._busy:
            return
        task = self.tasks.pop(session_id, None)
        if task is not None:
            task.cancel()  # it sleeps until a turn that no longer applies

    async def _load(self, session_id: str) -> None:
        """Queue a session's pending rows from before (a restart, a takeover) ahead of any
        send made since, then let the queue go."""
        try:
            rows = await self.journal.store.pending_messages(session_id)
        finally:
            self._loading.discard(session_id)
        queue = self.queues.setdefault(session_id, deque())
        known = set(queue)
        queue.extendleft(reversed([m.id for m in rows if m.id not in known]))
        if queue:
            self._kick(session_id)
        else:
            self.queues.pop(session_id, None)

    async def close(self) -> None:
        """Stop every queue's task (the queued rows stay stored, pending)."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.tasks.clear()
        self._busy.clear()  # a task cancelled before it ran never unmarked itself
        self._quiet.set()

    # ---------------------------------------------------------------- queueing

    def check_room(self, session: Session) -> None:
        """Refuse with ``429`` a send that would not fit in the session's queue."""
        queued = self.queued(session.id)
        limit = self.settings.send_queue_limit
        if queued < limit:
            return
        rate = rate_now(session.settings, session.created_at, self.clock.now())
        wait = max(self.next_at.get(session.id, 0.0) - self.clock.monotonic(), 0.0)
        retry_after = max(1, math.ceil(wait or (60 / rate if rate else 1)))
        raise SendQueueFull(
            f"Session {session.name!r} has {queued} messages waiting to be sent (the most a queue "
            f"holds is {limit}); retry in {retry_after} s",
            details={"queued": queued, "limit": limit, "send_rate": rate, "retry_after": retry_after},
        )

    async def enqueue(self, session: Session, message: NewMessage, payload: dict[str, Any]) -> Message:
        """Store ``message`` as pending (the caller holds the session's lock and checked it is
        connected and has room) with its ``message`` event, and queue it."""
        event = NewEvent(type=EventType.MESSAGE, session_id=session.id, owner=session.owner,
                         timestamp=message.timestamp, payload=payload)
        result = await self.journal.store.write(events=[event], messages=[message])
        stored = result.messages[0]
        self.queues.setdefault(session.id, deque()).append(stored.id)
        self._kick(session.id)
        return stored

    def _kick(self, session_id: str) -> None:
        task = self.tasks.get(session_id)
        if task is None or task.done():
            self._mark(session_id, True)  # busy from now, so quiet() waits for its first look
            self.tasks[session_id] = asyncio.get_running_loop().create_task(
                self._run(session_id), name=f"pacing {session_id}")

    # ---------------------------------------------------------------- sending

    async def quiet(self) -> None:
        """Wait until no queue is sending or recording (each waits for its turn, or is done):
        a fake clock's ``idle``, so tests move time only between sends."""
        while self._busy:
            await self._quiet.wait()

    def _mark(self, session_id: str, busy: bool) -> None:
        if busy:
            self._busy.add(session_id)
            self._quiet.clear()
        else:
            self._busy.discard(session_id)
            if not self._busy:
                self._quiet.set()

    async def _run(self, session_id: str) -> None:
        clock = self.clock
        queue = self.queues.get(session_id)
        try:
            while queue:
                session = self.registry.sessions.get(session_id)
                if session is None:  # deleted: its rows went with it
                    break
                runtime = self.supervisor.runtimes.get(session_id)
                if session.status is not Status.CONNECTED or runtime is None or runtime.engine_session is None:
                    return  # goes on when the session is connected again (on_change)
                if session_id in self._loading:
                    return  # older rows first: the load lets the queue go
                wait = self.next_at.get(session_id, 0.0) - clock.monotonic()
                if wait > 0:
                    self._mark(session_id, False)
                    try:
                        await clock.sleep(wait)
                    finally:
                        self._mark(session_id, True)
                    continue  # the session may have changed meanwhile
                try:
                    self.supervisor.placement.check(session_id)  # nothing leaves unless the lease holds
                except (LeaseLost, NodeUnavailable):
                    break  # the node that holds it now sends what is queued
                row = queue[0]
                await self._send(session, runtime.engine_session, row)
                if queue and queue[0] == row:
                    queue.popleft()
                session = self.registry.sessions.get(session_id, session)
                rate = rate_now(session.settings, session.created_at, self.clock.now())
                self.next_at[session_id] = clock.monotonic() + gap(rate, self.rng)
            if self.queues.get(session_id) is queue:  # not one made since (after a logout failed this)
                self.queues.pop(session_id, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("the pacing queue of %s stopped; it goes on at its next connect", session_id,
                        exc_info=True)
        finally:
            if self.tasks.get(session_id) is asyncio.current_task():
                del self.tasks[session_id]
                self._mark(session_id, False)

    async def _send(self, session: Session, engine: EngineSession, row: int) -> None:
        message = await self.journal.store.get_message(session.id, row)
        if message is None or message.status is not MessageStatus.PENDING:
            return  # settled already (a node that held the session before)
        path: Path | None = None
        try:
            outgoing, path = await self._outgoing(session.id, message)
        except Exception as exc:
            await self._settle(session.id, message, None, f"its file could not be read: {exc}")
            return
        try:
            message_id, error = await self.deliver(engine, message.chat, outgoing)
        finally:
            await media.discard(path)
        await self._settle(session.id, message, message_id, error)

    async def _outgoing(self, session_id: str, message: Message) -> tuple[Outgoing, Path | None]:
        """The engine's message for a stored pending one (its file copied out of the media
        store into the staging directory, which the caller deletes)."""
        text = message.text if message.type is MessageType.TEXT else (message.caption or "")
        file = path = None
        info = message.media
        storage = self.journal.media
        if info is not None and info.id is not None and storage is not None:
            path = staged_path(self.settings)
            size = await storage.size(session_id, info.id)
            if size is None:
                raise FileNotFoundError("the stored file is gone (media retention)")
            with open(path, "wb") as out:  # noqa: ASYNC230 - a private staging file, written in pieces
                async for piece in storage.read(session_id, info.id, 0, size - 1):
                    out.write(piece)
            file = MediaFile(str(path), info.mimetype, size, info.filename)
        location, contact = media.engine_parts(message.location, message.contact)
        return Outgoing(message.type.value, text, file, location, contact), path

    async def _settle(self, session_id: str, message: Message, message_id: str | None, error: str | None) -> None:
        """Record how a queued send went: its row, the session's counters, ``message_status``."""
        async with self.registry.lock(session_id):
            session = self.registry.sessions.get(session_id)
            current = await self.journal.store.get_message(session_id, message.id)
            if session is None or current is None or current.status is not MessageStatus.PENDING:
                return  # settled already (failed by a logout, or by the node that held it before)
            now = self.clock.now()
            history = session.settings.message_history
            status = MessageStatus.FAILED if error else MessageStatus.SENT
            counters = ({"messages_failed": session.messages_failed + 1} if error else
                        {"messages_sent": session.messages_sent + 1, "last_activity_at": now})
            new = session.model_copy(update={**counters, "updated_at": now})
            payload: dict[str, Any] = {"id": message.id, "message_id": message_id, "status": status.value,
                                       "chat": message.chat}
            if error:
                payload["error"] = error
            event = NewEvent(type=EventType.MESSAGE_STATUS, session_id=session_id, owner=session.owner,
                             timestamp=now, payload=payload)
            await self.journal.write_with(session, new, lambda: self.journal.store.settle_message(
                session_id, message.id, status=status, message_id=message_id, error=error, timestamp=now,
                keep_body=history, events=[event], sessions=[new]))
        if not history and message.media is not None and message.media.id and self.journal.media is not None:
            await self.journal.media.delete(session_id, message.media.id)

    async def _fail_queued(self, session_id: str, why: str) -> None:
        """Fail every send still queued for a session that can no longer send them."""
        queue = self.queues.pop(session_id, None)
        if queue is not None:
            queue.clear()  # its task ends after the send it may be making now
        task = self.tasks.get(session_id)
        if task is not None:
            if session_id not in self._busy:
                task.cancel()  # waiting for a turn
            with contextlib.suppress(BaseException):
                await task
        for message in await self.journal.store.pending_messages(session_id):
            await self._settle(session_id, message, None, why)


def pending_message(session: Session, chat: str, kind: MessageType, text: str, details: str | None,
                    now: datetime) -> NewMessage:
    """The stored row of a queued send: its whole body until it is sent (``message_history``
    off clears it then)."""
    return NewMessage(session.id, MessageDirection.OUT, chat, text, None, MessageStatus.PENDING, None, now,
                      kind, details)
