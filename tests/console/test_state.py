"""The console's view state and formatters, without Textual: ordering, filtering, event logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watui.machine import EventType, Status
from watui.models import Event, Message, MessageDirection, MessageStatus, Session
from watui.widgets.state import RECENT_EVENTS, RECENT_MESSAGES, ConsoleState, LoggedMessage
from watui.widgets.status_badge import ago, seconds_left, until

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def session(n: int, name: str, status: Status = Status.STOPPED, phone: str | None = None) -> Session:
    return Session(id=f"ses_{n}", name=name, owner="o", status=status, phone_number=phone,
                   created_at=T0, updated_at=T0)


def event(n: int, session_id: str = "ses_1") -> Event:
    return Event(id=n, type=EventType.STATUS, session_id=session_id, owner="o", timestamp=T0, payload={})


def test_view_sorts_and_filters_on_name_phone_and_status() -> None:
    state = ConsoleState()
    state.replace_all([
        session(1, "Zulu", Status.CONNECTED, "14155550123"),
        session(2, "alpha", Status.FAILED),
        session(3, "mike", Status.QR_READY),
    ])
    assert [s.name for s in state.view()] == ["alpha", "mike", "Zulu"]
    assert [s.name for s in state.view(sort="status")] == ["alpha", "mike", "Zulu"]  # failed first
    assert [s.name for s in state.view(sort="name", descending=True)] == ["Zulu", "mike", "alpha"]
    assert [s.name for s in state.view("ZU")] == ["Zulu"]
    assert [s.name for s in state.view("+1415")] == ["Zulu"]
    assert [s.name for s in state.view("qr ready")] == ["mike"]
    assert [s.name for s in state.view("failed")] == ["alpha"]
    assert state.view("nothing") == []


def test_view_sees_changes_after_the_cached_order() -> None:
    state = ConsoleState()
    state.replace_all([session(1, "a"), session(2, "b")])
    assert [s.name for s in state.view("conn")] == []
    state.put(session(2, "b", Status.CONNECTED))
    assert [s.name for s in state.view("conn")] == ["b"]
    state.put(session(3, "0-first"))
    assert [s.name for s in state.view()] == ["0-first", "a", "b"]
    state.remove("ses_1")
    assert [s.name for s in state.view()] == ["0-first", "b"]
    assert state.counts() == {Status.STOPPED: 1, Status.CONNECTED: 1}


def test_event_log_keeps_recent_in_order_without_duplicates() -> None:
    state = ConsoleState()
    state.add_event(event(50))
    state.add_event(event(50))  # the same event twice (resync) is kept once
    state.seed_events("ses_1", [event(n) for n in range(1, 52)])  # backlog overlaps the live one
    ids = [e.id for e in state.recent("ses_1")]
    assert ids == sorted(set(ids))
    assert len(ids) == RECENT_EVENTS and ids[-1] == 51


def test_relative_times() -> None:
    assert ago(None, T0) == "—"
    assert ago(T0, T0 + timedelta(seconds=2)) == "just now"
    assert ago(T0, T0 + timedelta(seconds=42)) == "42s ago"
    assert ago(T0, T0 + timedelta(minutes=3, seconds=5)) == "3m ago"
    assert ago(T0, T0 + timedelta(hours=5)) == "5h ago"
    assert ago(T0, T0 + timedelta(days=2)) == "2d ago"
    assert until(T0 + timedelta(seconds=17), T0) == "in 17s"
    assert until(T0 + timedelta(seconds=95), T0) == "in 1m 35s"
    assert until(T0, T0 + timedelta(seconds=1)) == "expired"
    assert seconds_left(T0 + timedelta(seconds=19.2), T0) == 20
    assert seconds_left(T0, T0 + timedelta(seconds=3)) == 0


def message_event(n: int, direction: str, text: str, *, session_id: str = "ses_1", message_id: str | None = None,
                  status: str | None = None, error: str | None = None, at: datetime = T0) -> Event:
    payload = {"direction": direction, "chat": "14155550100", "text": text, "message_id": message_id,
               "status": status or ("received" if direction == "in" else "sent")}
    if error:
        payload["error"] = error
    return Event(id=n, type=EventType.MESSAGE, session_id=session_id, owner="o", timestamp=at, payload=payload)


def stored(n: int, direction: str, text: str, *, message_id: str | None = None, status: str | None = None,
           error: str | None = None, at: datetime = T0) -> Message:
    return Message(id=n, session_id="ses_1", direction=MessageDirection(direction), chat="14155550100", text=text,
                   message_id=message_id, status=MessageStatus(status or ("received" if direction == "in" else "sent")),
                   error=error, timestamp=at)


def test_messages_kept_only_for_followed_sessions_and_merged_with_the_store_read() -> None:
    state = ConsoleState()
    state.add_event(message_event(1, "in", "not followed", message_id="A"))
    assert state.messages_of("ses_1") is None and "ses_1" not in state.messages
    assert state.follow_messages("ses_1") and not state.follow_messages("ses_1")
    assert state.messages_of("ses_1") is None  # followed, not read yet: the pane says "Loading…"

    # While the store is read: one message the read will also return, one it will not.
    state.add_event(message_event(2, "in", "hi", message_id="B", at=T0 + timedelta(seconds=2)))
    failed_at = T0 + timedelta(seconds=3)
    state.add_event(message_event(3, "out", "nope", status="failed", error="offline", at=failed_at))
    state.seed_messages("ses_1", [  # newest first, as the service answers
        stored(11, "in", "hi", message_id="B", at=T0 + timedelta(seconds=2)),
        stored(10, "in", "not followed", message_id="A", at=T0 + timedelta(seconds=1)),
    ])
    logged = state.messages_of("ses_1")
    assert logged is not None
    assert [(m.text, m.status, m.error) for m in logged] == [
        ("not followed", "received", None), ("hi", "received", None), ("nope", "failed", "offline"),
    ]
    # The failed send's event heard again (same text, chat and time, no WhatsApp id): still once.
    state.add_message("ses_1", LoggedMessage.from_message(stored(12, "out", "nope", status="failed", at=failed_at)))
    assert len(state.messages_of("ses_1") or []) == 3

    for n in range(RECENT_MESSAGES + 3):
        state.add_event(message_event(20 + n, "out", f"m{n}", message_id=f"M{n}", at=T0 + timedelta(minutes=n + 1)))
    logged = state.messages_of("ses_1")
    assert logged is not None and len(logged) == RECENT_MESSAGES
    assert logged[-1].text == f"m{RECENT_MESSAGES + 2}"

    state.remove("ses_1")
    assert state.messages_of("ses_1") is None and state.follow_messages("ses_1")
