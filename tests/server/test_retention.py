"""Retention (issue 11, item 10): old events, messages and deliveries go; a deleted session's
messages go with it; a resume from before the oldest kept event is ``410 EVENTS_EXPIRED``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from server_helpers import api_client, decode, read_until

from watui.server import BackgroundServer

TO = "+14155550123"


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def linked_with_messages(client: httpx.Client, name: str, **settings: Any) -> str:
    """A connected session that received one message and sent one."""
    sid: str = client.post("/v1/sessions", json={"name": name, "settings": settings}).json()["session_id"]
    wait_for(lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "qr_ready")
    assert client.post(f"/v1/sessions/{sid}/simulate", json={"action": "scan"}).status_code == 200
    wait_for(lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "connected")
    assert client.post(f"/v1/sessions/{sid}/simulate", json={"action": "message", "text": "secret in"}).status_code == 200
    assert client.post(f"/v1/sessions/{sid}/messages", json={"to": TO, "text": "secret out"}).status_code == 201
    return sid


def replay(client: httpx.Client, server: BackgroundServer, after: int = 0) -> list[dict[str, Any]]:
    """``/v1/events`` from ``after`` up to the newest committed event."""
    assert server.manager is not None
    head = server.manager.store.last_committed_id
    events = read_until(client, "/v1/events", lambda e: int(e.id) >= head,
                        headers={"Last-Event-ID": str(after)})
    return [{"id": int(e.id), "event": e.event, **decode(e)} for e in events]


def count(server: BackgroundServer, sql: str, *params: Any) -> int:
    assert server.manager is not None
    store = server.manager.store
    return int(server.call(lambda: store.fetchall(sql, params))[0][0])


def test_a_deleted_sessions_messages_go_with_it(server: BackgroundServer, client: httpx.Client) -> None:
    kept = linked_with_messages(client, "kept")
    gone = linked_with_messages(client, "gone")
    assert any(e["event"] == "message" and e["session_id"] == gone for e in replay(client, server))

    assert client.delete(f"/v1/sessions/{gone}").status_code == 204

    events = replay(client, server)
    assert [e for e in events if e["session_id"] == gone and e["event"] in ("message", "message_status")] == []
    assert any(e["event"] == "deleted" and e["session_id"] == gone for e in events)
    assert "secret" not in str([e for e in events if e["session_id"] == gone])
    assert count(server, "SELECT COUNT(*) FROM messages WHERE session_id = ?", gone) == 0
    assert client.get(f"/v1/sessions/{kept}/messages").json()["total"] == 2  # others keep theirs


def test_old_rows_are_pruned_and_an_expired_resume_is_410(
    start_server: Callable[..., BackgroundServer],
) -> None:
    seconds = 4 / 86400
    server = start_server(event_retention_days=seconds, message_retention_days=seconds,
                          webhook_retention_days=seconds, webhook_allow_private=True)
    assert server.manager is not None and server.manager.webhooks is not None
    server.manager.webhooks._transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with api_client(server.base_url, server.admin_key) as client:
        sid = linked_with_messages(client, "old", webhook_url="http://127.0.0.1:9/hook")
        wait_for(lambda: client.get(f"/v1/sessions/{sid}/webhooks/deliveries").json()["total"] > 0)
        wait_for(lambda: {d["status"] for d in client.get(f"/v1/sessions/{sid}/webhooks/deliveries",
                                                          params={"limit": 100}).json()["deliveries"]}
                 == {"delivered"})
        head = server.manager.store.last_committed_id
        assert len(replay(client, server)) == head  # nothing pruned yet

        # Four seconds later the pass (every second here) has pruned all of it.
        wait_for(lambda: client.get(f"/v1/sessions/{sid}/messages").json()["total"] == 0)
        wait_for(lambda: count(server, "SELECT COUNT(*) FROM events") == 0)
        wait_for(lambda: client.get(f"/v1/sessions/{sid}/webhooks/deliveries").json()["total"] == 0)

        pruned_through = server.manager.store.last_committed_id  # (receipts came after head)
        expired = client.get("/v1/events", headers={"Last-Event-ID": "0"})
        assert expired.status_code == 410
        assert expired.json()["error"]["code"] == "EVENTS_EXPIRED"
        assert expired.json()["error"]["details"]["oldest_id"] == pruned_through + 1

        # Resuming where the log now starts works, and new events follow with no gap.
        other = client.post("/v1/sessions", json={"name": "new", "start": False}).json()["session_id"]
        events = replay(client, server, after=pruned_through)
        assert (events[0]["id"], events[0]["session_id"]) == (pruned_through + 1, other)
        assert [e["id"] for e in events] == list(range(pruned_through + 1, pruned_through + 1 + len(events)))
