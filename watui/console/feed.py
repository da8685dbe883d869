"""From the service's events to the console's view state, in coalesced batches.

Each event marks its session dirty; the dirty sessions are re-read in one batch every
``refresh_interval`` seconds, so a burst of a thousand status changes is one repaint, and the
next batch is scheduled only after the previous one finished. The detail pane's extras (past
events, messages, webhook deliveries) are read here too, on demand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from typing import TYPE_CHECKING

from watui.errors import SessionNotFound, WatuiError
from watui.machine import EventType, Status
from watui.models import Event
from watui.widgets.messages import StateChanged
from watui.widgets.state import RECENT_EVENTS, RECENT_MESSAGES

if TYPE_CHECKING:
    from watui.app import WatuiApp

log = logging.getLogger(__name__)

BULK_RELOAD = 256
"""Above this many changed sessions in one batch, re-list everything instead of one by one."""

RETRY_AFTER = 1.0
"""Seconds before re-reading changed sessions after a read failed (the server is away)."""

DELIVERIES_EVERY = 1.0
"""Seconds between two reads of the highlighted session's webhook deliveries."""

STATS_DAYS = 7
"""Days of message statistics the detail pane shows (today and the six before)."""


class Feed:
    def __init__(self, app: WatuiApp) -> None:
        self.app = app
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        self._scheduled = False
        self._flushing = False
        self._events_loaded: set[str] = set()
        self._deliveries_loaded: dict[str, float] = {}
        self._stats_asked: dict[str, tuple[int, int, int, str]] = {}
        """Per session: its message counters and the day when its statistics were last read."""
        self.flushes = 0
        self._everything = False
        """The next batch re-reads every session (events were lost: attach mode's resync)."""
        self.connected: set[str] = set()
        """Connected sessions as the events tell it, sampled at each event's own time (so the
        header's sparkline does not depend on when a refresh happened to run)."""

    def event(self, event: Event) -> None:
        app = self.app
        app.state.add_event(event)
        if event.type == EventType.MESSAGE:
            app.activity.message(event.timestamp)
        elif event.type in (EventType.STATUS, EventType.DELETED):
            before = len(self.connected)
            if event.type == EventType.STATUS and event.payload.get("to") == Status.CONNECTED:
                self.connected.add(event.session_id)
            else:
                self.connected.discard(event.session_id)
            if len(self.connected) != before:
                app.activity.sample_connected(event.timestamp, len(self.connected))
        if event.type == EventType.DELETED:
            self.removed.add(event.session_id)
            self.dirty.discard(event.session_id)
        else:
            self.dirty.add(event.session_id)
        self.schedule()

    def forget(self, session_id: str) -> None:
        """A session this console deleted: off the table with the next batch."""
        if session_id in self.app.state.sessions:
            self.removed.add(session_id)
            self.schedule()

    def touch(self, session_id: str) -> None:
        self.dirty.add(session_id)
        self.schedule()

    def reload_all(self) -> None:
        """Re-read every session with the next batch (the events since the last one are lost)."""
        self._everything = True
        self.schedule()

    def schedule(self) -> None:
        if self._scheduled or self._flushing:
            return
        self._scheduled = True
        self.app.set_timer(self.app.refresh_interval, self.flush, name="flush-sessions")

    @property
    def pending(self) -> bool:
        return bool(self.dirty or self.removed or self._everything)

    async def flush(self) -> None:
        """Re-read the changed sessions and tell every screen, once per batch."""
        app = self.app
        self._scheduled = False
        self._flushing = True
        try:
            dirty, self.dirty = self.dirty, set()
            removed, self.removed = self.removed, set()
            everything, self._everything = len(dirty) > BULK_RELOAD or self._everything, False
            try:
                if everything:
                    page = await app.service.list_sessions(limit=None)
                    app.state.replace_all(page.sessions)
                else:
                    # Concurrently: attached to a server, each read is a round trip (the remote
                    # service sends the reads of one turn as one bulk request).
                    ids = list(dirty)
                    reads = await asyncio.gather(*(app.service.get_session(i) for i in ids),
                                                 return_exceptions=True)
                    for session_id, read in zip(ids, reads, strict=True):
                        if isinstance(read, SessionNotFound):
                            removed.add(session_id)
                        elif isinstance(read, BaseException):
                            raise read
                        else:
                            app.state.put(read)
            except Exception:
                # The service is away (shutting down, or a server being restarted): keep what
                # is on screen, and read these sessions again in a while.
                log.warning("refreshing %d sessions failed", len(dirty), exc_info=True)
                self.dirty |= dirty
                self.removed |= removed
                self._everything |= everything
                self._scheduled = True
                app.set_timer(RETRY_AFTER, self.flush, name="flush-sessions-retry")
                return
            for session_id in removed:
                app.state.remove(session_id)
            self.flushes += 1
            if everything:
                self.connected = {s.id for s in app.state.sessions.values() if s.status == Status.CONNECTED}
            app.post_to_screens(StateChanged(frozenset(dirty - removed), frozenset(removed), everything))
        finally:
            self._flushing = False
        if self.pending:
            self.schedule()

    # -- the detail pane's extras --------------------------------------------------------

    def ensure_events(self, session_id: str) -> None:
        """Load a session's past events for its detail pane, once."""
        if session_id not in self._events_loaded:
            self._events_loaded.add(session_id)
            self.app.run_worker(self._load_events(session_id), group="events", exit_on_error=False)

    async def _load_events(self, session_id: str) -> None:
        try:
            tail = await self.app.service.recent_events(session_id, limit=RECENT_EVENTS)
        except WatuiError:
            return
        self.app.state.seed_events(session_id, tail)
        self.app.post_to_screens(StateChanged(frozenset({session_id})))

    def ensure_messages(self, session_id: str) -> None:
        """Read a session's latest messages once; ``message`` events keep them current."""
        if self.app.state.follow_messages(session_id):
            self.app.run_worker(self._load_messages(session_id), group="messages", exit_on_error=False)

    async def _load_messages(self, session_id: str) -> None:
        try:
            page = await self.app.service.list_messages(session_id, limit=RECENT_MESSAGES)
        except WatuiError:
            self.app.state.forget_messages(session_id)  # gone, or not ours: the next look tries again
            return
        self.app.state.seed_messages(session_id, page.messages)
        self.app.post_to_screens(StateChanged(frozenset({session_id})))

    def refresh_deliveries(self, session_id: str) -> None:
        """(Re)load a session's latest webhook deliveries, at most once a second."""
        session = self.app.state.sessions.get(session_id)
        if session is None or session.settings.webhook_url is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._deliveries_loaded.get(session_id, -DELIVERIES_EVERY) < DELIVERIES_EVERY:
            return
        self._deliveries_loaded[session_id] = now
        self.app.run_worker(self._load_deliveries(session_id), group="deliveries", exclusive=True,
                            exit_on_error=False)

    def refresh_stats(self, session_id: str) -> None:
        """(Re)read a session's message statistics when its message counters or the day have
        changed since the last read (so an idle session is read once, not on every redraw)."""
        session = self.app.state.sessions.get(session_id)
        if session is None:
            return
        key = (session.messages_sent, session.messages_received, session.messages_failed,
               self.app.now().astimezone(UTC).date().isoformat())
        if self._stats_asked.get(session_id) == key:
            return
        self._stats_asked[session_id] = key
        self.app.run_worker(self._load_stats(session_id), group="stats", exit_on_error=False)

    async def _load_stats(self, session_id: str) -> None:
        try:
            stats = await self.app.service.message_stats(session_id, days=STATS_DAYS)
        except WatuiError:
            return  # gone, or a server without statistics: tried again when the counters change
        if session_id in self.app.state.sessions:
            self.app.state.stats[session_id] = stats
            self.app.post_to_screens(StateChanged(frozenset({session_id})))

    async def _load_deliveries(self, session_id: str) -> None:
        try:
            page = await self.app.service.list_webhook_deliveries(session_id, limit=6)
        except WatuiError:
            return
        self.app.state.deliveries[session_id] = page.deliveries
        self.app.post_to_screens(StateChanged(frozenset({session_id})))
