"""The console's view state and formatters, without Textual: ordering, filtering, event logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watui.machine import EventType, Status
from watui.models import Event, Session
from watui.widgets.state import RECENT_EVENTS, ConsoleState
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
