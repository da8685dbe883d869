"""The console's view state: every visible session and its recent events, outside any widget.

The app owns one :class:`ConsoleState`. Events from the service mark sessions dirty; the app
refreshes the dirty ones in one batch and the widgets redraw from here. Keeping this free of
Textual makes ordering and filtering testable and fast on 10,000 sessions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from watui.machine import Status
from watui.models import Event, Session
from watui.webhooks import WebhookDelivery

RECENT_EVENTS = 30
"""Events kept per session for the detail pane."""

SORT_COLUMNS: tuple[str, ...] = ("name", "status", "phone", "activity", "messages", "reconnects")
"""Columns the table can sort by, in the order ``o`` cycles through them."""

STATUS_ORDER: dict[Status, int] = {
    Status.FAILED: 0,
    Status.DISCONNECTED: 1,
    Status.QR_READY: 2,
    Status.INITIALIZING: 3,
    Status.CONNECTING: 4,
    Status.CONNECTED: 5,
    Status.STOPPED: 6,
}
"""Sorting by status puts what needs attention first."""

_EPOCH = datetime.min


def _activity(session: Session) -> datetime:
    ts = session.last_activity_at or session.updated_at
    return ts.replace(tzinfo=None)


SORT_KEYS: dict[str, Callable[[Session], Any]] = {
    "name": lambda s: (s.name.casefold(), s.id),
    "status": lambda s: (STATUS_ORDER.get(s.status, 9), s.name.casefold()),
    "phone": lambda s: (s.phone_number or "~", s.name.casefold()),
    "activity": _activity,
    "messages": lambda s: s.messages_received + s.messages_sent,
    "reconnects": lambda s: s.reconnect_count,
}


def haystack(session: Session) -> str:
    """What the filter searches: name, phone number (with and without +) and status."""
    number = session.phone_number or ""
    status = session.status.value
    return f"{session.name.casefold()}\n{number}\n+{number}\n{status}\n{status.replace('_', ' ')}"


def matches(session: Session, query: str) -> bool:
    """Filter on name, phone number and status (case-insensitive substring)."""
    q = query.strip().casefold()
    return not q or q in haystack(session)


class ConsoleState:
    """Sessions by id plus each one's recent events; a change counter tells views to redraw."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.events: dict[str, deque[Event]] = {}
        self.deliveries: dict[str, list[WebhookDelivery]] = {}
        self.version = 0
        # Sorting 10,000 sessions on every filter keystroke is most of the work: keep the
        # last sorted order (and each snapshot's search text) until something changes.
        self._sorted: tuple[int, str, bool, list[Session]] | None = None
        self._haystacks: dict[str, tuple[Session, str]] = {}

    def replace_all(self, sessions: Iterable[Session]) -> None:
        self.sessions = {s.id: s for s in sessions}
        self.version += 1

    def put(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.version += 1

    def remove(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.events.pop(session_id, None)
        self.deliveries.pop(session_id, None)
        self._haystacks.pop(session_id, None)
        self.version += 1

    def add_event(self, event: Event) -> None:
        log = self.events.get(event.session_id)
        if log is None:
            log = self.events[event.session_id] = deque(maxlen=RECENT_EVENTS)
        if log and log[-1].id >= event.id:
            return
        log.append(event)

    def seed_events(self, session_id: str, events: Iterable[Event]) -> None:
        """Fill a session's log from the store, keeping anything newer that arrived live."""
        log: deque[Event] = deque(maxlen=RECENT_EVENTS)
        live = self.events.get(session_id, ())
        known = {e.id for e in live}
        for event in events:
            if event.id not in known:
                log.append(event)
        for event in live:
            log.append(event)
        self.events[session_id] = deque(sorted(log, key=lambda e: e.id), maxlen=RECENT_EVENTS)

    def recent(self, session_id: str) -> list[Event]:
        return list(self.events.get(session_id, ()))

    def sorted(self, sort: str = "name", descending: bool = False) -> list[Session]:
        """Every session in table order (cached until the state or the order changes)."""
        cached = self._sorted
        if cached is not None and cached[:3] == (self.version, sort, descending):
            return cached[3]
        rows = sorted(self.sessions.values(), key=SORT_KEYS.get(sort, SORT_KEYS["name"]), reverse=descending)
        self._sorted = (self.version, sort, descending, rows)
        return rows

    def _haystack(self, session: Session) -> str:
        known = self._haystacks.get(session.id)
        if known is not None and known[0] is session:
            return known[1]
        text = haystack(session)
        self._haystacks[session.id] = (session, text)
        return text

    def view(self, query: str = "", sort: str = "name", descending: bool = False) -> list[Session]:
        """The sessions to show, filtered by ``query`` and sorted by the column ``sort``."""
        rows = self.sorted(sort, descending)
        q = query.strip().casefold()
        if not q:
            return list(rows)
        return [s for s in rows if q in self._haystack(s)]

    def counts(self) -> dict[Status, int]:
        out: dict[Status, int] = {}
        for session in self.sessions.values():
            out[session.status] = out.get(session.status, 0) + 1
        return out
