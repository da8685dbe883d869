"""The console's view state: every visible session, its recent events and messages, outside any widget.

The app owns one :class:`ConsoleState`. Events from the service mark sessions dirty; the app
refreshes the dirty ones in one batch and the widgets redraw from here. Keeping this free of
Textual makes ordering and filtering testable and fast on 10,000 sessions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from watui.machine import EventType, Status
from watui.models import (
    OUTGOING_PROGRESS,
    Event,
    Message,
    MessageDirection,
    MessageStats,
    MessageStatus,
    Session,
)
from watui.webhooks import WebhookDelivery

RECENT_EVENTS = 30
"""Events kept per session for the detail pane."""

RECENT_MESSAGES = 20
"""Messages kept per session for the detail pane's message log."""

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

PARKED_REASONS = frozenset({"shutdown", "restart"})
"""Why a session is ``disconnected`` when the end of the last run parked it (a clean shutdown,
or a crash found at start-up) for the start-up restore to bring back."""


def _activity(session: Session) -> datetime:
    ts = session.last_activity_at or session.updated_at
    return ts.replace(tzinfo=None)


SORT_KEYS: dict[str, Callable[[Session], Any]] = {
    "name": lambda s: (s.name.casefold(), s.id),
    "status": lambda s: (STATUS_ORDER.get(s.status, 9), s.name.casefold()),
    "phone": lambda s: (s.phone_number or "~", s.name.casefold()),
    # Ties go by name, so equal rows keep one order whatever order their events came in.
    "activity": lambda s: (_activity(s), s.name.casefold()),
    "messages": lambda s: (s.messages_received + s.messages_sent, s.name.casefold()),
    "reconnects": lambda s: (s.reconnect_count, s.name.casefold()),
    "node": lambda s: (s.node_id or "~", s.name.casefold()),  # by a click on NODE (cluster mode)
}


def haystack(session: Session) -> str:
    """What the filter searches: name, phone number (with and without +) and status."""
    number = session.phone_number or ""
    status = session.status.value
    return f"{session.name.casefold()}\n{number}\n+{number}\n{status}\n{status.replace('_', ' ')}"


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """One line of a session's message log: a stored :class:`Message` or a live ``message`` event."""

    direction: MessageDirection
    chat: str
    text: str
    status: MessageStatus
    timestamp: datetime
    message_id: str | None = None
    error: str | None = None
    id: int | None = field(default=None, compare=False)
    """watui's id of the stored message (None for a line heard as a live event)."""
    has_file: bool = field(default=False, compare=False)
    """A media message whose file is stored (the log can save it)."""

    @property
    def key(self) -> tuple[object, ...]:
        """The same message read from the store and heard as an event gives the same key.

        Sent and received messages carry WhatsApp's id. A failed send has none; the manager
        stamps its row and its event with the same time, so what, to whom and when tell it apart.
        """
        if self.message_id:
            return (self.message_id,)
        return (self.direction, self.chat, self.text, self.timestamp)

    @classmethod
    def from_message(cls, message: Message) -> LoggedMessage:
        text = message.text
        if message.type.value != "text":
            text = describe(message.type.value, message.caption, message.model_dump(mode="json"))
        return cls(message.direction, message.chat, text, message.status, message.timestamp,
                   message.message_id, message.error, message.id,
                   message.media is not None and message.media.id is not None)

    @classmethod
    def from_event(cls, event: Event) -> LoggedMessage | None:
        """The log line a ``message`` event stands for (``None`` for any other event, or a malformed one)."""
        p = event.payload
        if event.type != EventType.MESSAGE:
            return None
        try:
            direction = MessageDirection(str(p.get("direction")))
            status = MessageStatus(p.get("status") or (
                MessageStatus.RECEIVED if direction == MessageDirection.IN else MessageStatus.SENT))
        except ValueError:
            return None
        text = str(p.get("text") or "")
        kind = str(p.get("type") or "text")
        if kind != "text":
            text = describe(kind, p.get("caption"), p)
        media = p.get("media")
        return cls(direction, str(p.get("chat") or ""), text, status, event.timestamp,
                   p.get("message_id") or None, p.get("error") or None,
                   has_file=isinstance(media, dict) and media.get("id") is not None)


def human_size(size: int) -> str:
    """``2.0 KB``, ``5.0 MB`` (decimal units, as WhatsApp shows them)."""
    if size < 1000:
        return f"{size} B"
    if size < 1000 * 1000:
        return f"{size / 1000:.1f} KB"
    return f"{size / 1e6:.1f} MB"


def describe(kind: str, caption: object, parts: dict[str, Any]) -> str:
    """A message that is not text, as one log line: its type, its file's size (or what a
    location or contact says) and its caption: ``(image 2.0 KB) the caption``."""
    what = kind
    media = parts.get("media")
    if isinstance(media, dict) and isinstance(media.get("size"), int):
        what += " " + human_size(media["size"])
        if media.get("id") is None:
            what += ", not kept"
    location = parts.get("location")
    if isinstance(location, dict):
        what += f" {location.get('latitude')}, {location.get('longitude')}"
        if location.get("name"):
            what += f" {location['name']}"
    contact = parts.get("contact")
    if isinstance(contact, dict):
        what += f" {contact.get('name')} +{contact.get('phone')}"
    return f"({what}) {caption}" if caption else f"({what})"


def _later(old: MessageStatus | None, new: MessageStatus) -> MessageStatus:
    """The further of two statuses of a sent message (a status never moves back)."""
    if old is None or old not in OUTGOING_PROGRESS:
        return new
    return max(old, new, key=OUTGOING_PROGRESS.index)


def _moved_on(message: LoggedMessage, status: MessageStatus) -> LoggedMessage:
    if message.status not in OUTGOING_PROGRESS or _later(message.status, status) == message.status:
        return message
    return replace(message, status=status)


def awaiting_restore(session: Session, status: Status, reason: str | None) -> bool:
    """Parked by the end of the last run, waiting for the start-up restore to bring it back
    (meaningful while that restore runs)."""
    return session.autostart and status == Status.DISCONNECTED and reason in PARKED_REASONS


def matches(session: Session, query: str) -> bool:
    """Filter on name, phone number and status (case-insensitive substring)."""
    q = query.strip().casefold()
    return not q or q in haystack(session)


class ConsoleState:
    """Sessions by id plus each one's recent events; a change counter tells views to redraw.

    Messages are kept only for the sessions the console has shown (``follow_messages``): their
    log is read from the store once, then kept current from ``message`` events.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.events: dict[str, deque[Event]] = {}
        self.messages: dict[str, deque[LoggedMessage]] = {}
        self._messages_seeded: set[str] = set()
        self._statuses: dict[str, dict[str, MessageStatus]] = {}
        """Per followed session: statuses heard for messages not in its log yet."""
        self.deliveries: dict[str, list[WebhookDelivery]] = {}
        self.stats: dict[str, MessageStats] = {}
        """Message statistics of the sessions shown in a detail pane (the last few days)."""
        self.version = 0
        self.told: dict[str, tuple[Status, str | None]] = {}
        """The status (and reason) each session's latest ``status`` event gave, until its
        snapshot is read again: the header counts by it, so it never lags the events."""
        self.told_version = 0
        # Sorting 10,000 sessions on every filter keystroke is most of the work: keep the
        # last sorted order (and each snapshot's search text) until something changes.
        self._sorted: tuple[int, str, bool, list[Session]] | None = None
        self._haystacks: dict[str, tuple[Session, str]] = {}

    def replace_all(self, sessions: Iterable[Session]) -> None:
        self.sessions = {s.id: s for s in sessions}
        self.told.clear()
        self.version += 1

    def put(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.told.pop(session.id, None)
        self.version += 1

    def status_of(self, session: Session) -> tuple[Status, str | None]:
        """The session's status and reason as the events last told them (its snapshot's if none
        came since it was read)."""
        return self.told.get(session.id) or (session.status, session.reason)

    def remove(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.events.pop(session_id, None)
        self.forget_messages(session_id)
        self.deliveries.pop(session_id, None)
        self.stats.pop(session_id, None)
        self._haystacks.pop(session_id, None)
        self.told.pop(session_id, None)
        self.version += 1

    def add_event(self, event: Event) -> None:
        """A live event: into the session's recent events (once, even if its past, read from the
        store meanwhile, has it already), then what it says of the session's status and messages."""
        log = self.events.get(event.session_id)
        if log is None:
            log = self.events[event.session_id] = deque(maxlen=RECENT_EVENTS)
        newer = [e for e in log if e.id >= event.id]
        if not newer:
            log.append(event)
        if event.type == EventType.STATUS and event.session_id in self.sessions:
            if not any(e.type == EventType.STATUS and e.id > event.id for e in newer):
                self._tell_status(event)
        if event.session_id in self.messages:
            if event.type == EventType.MESSAGE:
                self.add_message(event.session_id, LoggedMessage.from_event(event))
            elif event.type == EventType.MESSAGE_STATUS:
                self.message_status(event)

    def _tell_status(self, event: Event) -> None:
        try:
            to = Status(str(event.payload.get("to")))
        except ValueError:
            return
        self.told[event.session_id] = (to, event.payload.get("reason") or None)
        self.told_version += 1

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

    # -- messages -----------------------------------------------------------------------

    def follow_messages(self, session_id: str) -> bool:
        """Start keeping a session's messages; ``True`` the first time (the caller loads the past)."""
        if session_id in self.messages:
            return False
        self.messages[session_id] = deque(maxlen=RECENT_MESSAGES)
        return True

    def forget_messages(self, session_id: str) -> None:
        """Stop keeping a session's messages (deleted, or its log could not be read)."""
        self.messages.pop(session_id, None)
        self._messages_seeded.discard(session_id)
        self._statuses.pop(session_id, None)

    def add_message(self, session_id: str, message: LoggedMessage | None) -> None:
        """A live message for a followed session; one the store read already gave is skipped."""
        log = self.messages.get(session_id)
        if log is None or message is None:
            return
        key = message.key
        if any(m.key == key for m in log):
            return
        log.append(self._with_held(session_id, message))

    def message_status(self, event: Event) -> None:
        """A ``message_status`` event (delivered, read): the followed log's line moves forward.

        Heard before the message itself is in the log (its read from the store is under way),
        the status is kept for it, so the log never shows a status older than the events told.
        """
        message_id = event.payload.get("message_id")
        try:
            status = MessageStatus(str(event.payload.get("status")))
        except ValueError:
            return
        if not message_id or status not in OUTGOING_PROGRESS:
            return
        log = self.messages.get(event.session_id)
        if log is None:
            return
        for i, message in enumerate(log):
            if message.message_id == message_id:
                log[i] = _moved_on(message, status)
                return
        held = self._statuses.setdefault(event.session_id, {})
        held[message_id] = _later(held.get(message_id), status)
        if len(held) > RECENT_MESSAGES * 4:
            del held[next(iter(held))]

    def _with_held(self, session_id: str, message: LoggedMessage) -> LoggedMessage:
        held = self._statuses.get(session_id)
        status = held.pop(message.message_id, None) if held and message.message_id else None
        return _moved_on(message, status) if status is not None else message

    def seed_messages(self, session_id: str, newest_first: Iterable[Message]) -> None:
        """Fill a followed session's log from the store, keeping what arrived live meanwhile."""
        live = self.messages.get(session_id)
        if live is None:
            return
        stored = [LoggedMessage.from_message(m) for m in newest_first]
        known = {m.key for m in stored}
        merged = [*reversed(stored), *(m for m in live if m.key not in known)]
        merged = [self._with_held(session_id, m) for m in merged]
        merged.sort(key=lambda m: m.timestamp)
        self.messages[session_id] = deque(merged, maxlen=RECENT_MESSAGES)
        self._messages_seeded.add(session_id)

    def messages_of(self, session_id: str) -> list[LoggedMessage] | None:
        """A session's latest messages, oldest first; ``None`` until its log has been read."""
        if session_id not in self._messages_seeded:
            return None
        return list(self.messages.get(session_id, ()))

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
