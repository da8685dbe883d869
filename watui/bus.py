"""The event bus: publish = persist, then fan out.

Each subscriber has a bounded queue. Fan-out never waits: when a subscriber's queue is full
it is marked *lagging* and skipped; once it has drained its queue it reads what it missed from
the store by event id, then goes live again. So a slow subscriber costs the publisher nothing,
holds at most ``queue_size`` events in memory, and still sees every event exactly once, in
id order.

The seam between replay and live needs no lock: every event a subscriber skipped was
committed before it was skipped (fan-out runs after commit), so the next read from the store
includes it; anything that arrives both ways is dropped by id.

In cluster mode the bus follows a feed (:meth:`EventBus.follow`, :mod:`watui.cluster.fanout`)
instead of its store's commits: the feed delivers every node's events in id order, so a local
event never overtakes a remote one with a smaller id (which subscribers would then drop as a
duplicate). The seam argument holds the same way: the feed hands an event out only after it
committed, so a lagging subscriber's read from the store has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol

from watui.machine import EventType
from watui.models import Event, NewEvent, Session
from watui.stores.base import StoreProtocol

log = logging.getLogger(__name__)

_CLOSED = object()


class EventSource(Protocol):
    """Where a bus takes its events from in cluster mode: every node's committed events, in
    id order, with no gap and no duplicate (:class:`watui.cluster.fanout.ClusterFeed`)."""

    on_events: list[Callable[[list[Event]], None]]
    delivered_id: int
    """The last event id handed to ``on_events``."""


class EventFilter:
    __slots__ = ("owner", "session_id", "types")

    def __init__(
        self,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        types: frozenset[EventType] | None = None,
    ) -> None:
        self.owner = owner
        self.session_id = session_id
        self.types = types

    def matches(self, event: Event) -> bool:
        return (
            (self.owner is None or event.owner == self.owner)
            and (self.session_id is None or event.session_id == self.session_id)
            and (self.types is None or event.type in self.types)
        )


class BusSubscription:
    """An async iterator of events, in id order, with no gap and no duplicate."""

    def __init__(self, bus: EventBus, filter: EventFilter, after_id: int | None, queue_size: int) -> None:
        self._bus = bus
        self.filter = filter
        self._queue: deque[Event] = deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._buffer: deque[Event] = deque()
        self.lagging = after_id is not None
        """True while events may be in the store that this subscriber has not queued."""
        self.last_id = after_id if after_id is not None else bus.last_id
        self.resyncs = 0
        self.closed = False

    # Called by the bus, synchronously, right after a commit.
    def _offer(self, event: Event) -> None:
        if self.lagging or event.id <= self.last_id:
            return
        if len(self._queue) >= self._queue_size:
            self.lagging = True
            self._wakeup.set()
            return
        self._queue.append(event)
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self.closed:
                raise StopAsyncIteration
            event = self._next_buffered()
            if event is not None:
                return event
            if self.lagging:
                await self._resync()
                continue
            self._wakeup.clear()
            if not self._queue and not self.lagging:
                await self._wakeup.wait()

    def _next_buffered(self) -> Event | None:
        for source in (self._buffer, self._queue):
            while source:
                event = source.popleft()
                if event.id > self.last_id:
                    self.last_id = event.id
                    return event
        return None

    async def _resync(self) -> None:
        # Go live first, then read: whatever commits after this point is queued, whatever
        # committed before is in the read. Duplicates are dropped by id.
        self.lagging = False
        self.resyncs += 1
        f = self.filter
        page = 500
        rows = await self._bus.store.read_events(
            after_id=self.last_id, owner=f.owner, session_id=f.session_id, types=f.types, limit=page
        )
        if len(rows) == page:
            self.lagging = True  # more to read; drop live events until caught up
            self._queue.clear()
        self._buffer.extend(rows)

    def get_nowait(self) -> Event | None:
        """The next event if one is ready in memory, without waiting or reading the store."""
        if self.lagging and not self._buffer and not self._queue:
            return None
        return self._next_buffered()

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._buffer)

    async def aclose(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._bus._subscribers.discard(self)


class EventBus:
    def __init__(self, store: StoreProtocol, *, queue_size: int = 1024) -> None:
        self.store = store
        self.queue_size = queue_size
        self._subscribers: set[BusSubscription] = set()
        self._source: EventSource | None = None
        store.on_commit.append(self._fan_out)

    def follow(self, source: EventSource) -> None:
        """Cluster mode: fan out ``source``'s events (every node's, in id order) instead of
        this node's own commits. Call it before anyone subscribes."""
        if self._source is not None:
            raise RuntimeError("this bus already follows a feed")
        self.store.on_commit.remove(self._fan_out)
        source.on_events.append(self._fan_out)
        self._source = source

    @property
    def last_id(self) -> int:
        """The newest event id this bus has fanned out (or would have): where a new
        subscriber without ``after_id`` starts."""
        if self._source is not None:
            return self._source.delivered_id
        return self.store.last_committed_id

    async def publish(
        self, events: Sequence[NewEvent], *, sessions: Sequence[Session] = ()
    ) -> list[Event]:
        """Persist ``events`` (and session snapshots) atomically, then fan them out."""
        return await self.store.append(events, sessions=sessions)

    def _fan_out(self, events: Iterable[Event]) -> None:
        subscribers = tuple(self._subscribers)
        for event in events:
            for sub in subscribers:
                if sub.filter.matches(event):
                    sub._offer(event)

    def subscribe(
        self,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        types: frozenset[EventType] | None = None,
        after_id: int | None = None,
        queue_size: int | None = None,
    ) -> BusSubscription:
        """Live events from now on; with ``after_id``, first every stored event after it."""
        sub = BusSubscription(
            self,
            EventFilter(owner=owner, session_id=session_id, types=types),
            after_id,
            queue_size or self.queue_size,
        )
        self._subscribers.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def close(self) -> None:
        for sub in tuple(self._subscribers):
            await sub.aclose()
