"""Message statistics and ``settings.message_history`` over real HTTP (a uvicorn on loopback):
``GET /v1/sessions/{id}/stats``, ``GET /v1/stats`` with owner scoping, and a session that
keeps no message bodies but still counts its messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from server_helpers import api_client, linked_session

from watui.server import BackgroundServer


def traffic(client: httpx.Client, session_id: str, *, received: int, sent: int) -> None:
    for n in range(received):
        answer = client.post(f"/v1/sessions/{session_id}/simulate",
                             json={"action": "message", "text": f"secret in {n}", "chat": "+14155550123"})
        assert answer.status_code == 200, answer.text
    for n in range(sent):
        answer = client.post(f"/v1/sessions/{session_id}/messages",
                             json={"to": "+14155550123", "text": f"secret out {n}"})
        assert answer.status_code == 201, answer.text


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_history_off_keeps_no_bodies_and_stats_count_everything(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server()
    with api_client(server.base_url, server.admin_key) as client:
        quiet = linked_session(client, "quiet", message_history=False)
        chatty = linked_session(client, "chatty")
        assert client.get(f"/v1/sessions/{quiet}").json()["settings"]["message_history"] is False
        assert client.get(f"/v1/sessions/{chatty}").json()["settings"]["message_history"] is True
        traffic(client, quiet, received=2, sent=1)
        traffic(client, chatty, received=1, sent=3)

        page = client.get(f"/v1/sessions/{quiet}/messages").json()
        assert page["total"] == 3
        assert [(m["direction"], m["text"], m["status"]) for m in page["messages"]] == [
            ("out", "", "sent"), ("in", "", "received"), ("in", "", "received"),
        ]
        assert all(m["message_id"] and m["chat"] == "14155550123" for m in page["messages"])
        assert "secret" not in client.get(f"/v1/sessions/{quiet}/messages").text
        kept = client.get(f"/v1/sessions/{chatty}/messages").json()["messages"]
        assert [m["text"] for m in kept][-1] == "secret in 0"

        stats = client.get(f"/v1/sessions/{quiet}/stats").json()
        assert (stats["total"], stats["sent"], stats["received"], stats["failed"]) == (3, 1, 2, 0)
        assert stats["by_type"] == {"text": 3}
        assert len(stats["by_day"]) == 30 and stats["by_day"][today()] == {"sent": 1, "received": 2}
        last = datetime.fromisoformat(stats["last_activity"])
        assert datetime.now(UTC) - last < timedelta(minutes=1)

        week = client.get(f"/v1/sessions/{chatty}/stats", params={"days": 7}).json()
        assert list(week["by_day"])[-1] == today() and len(week["by_day"]) == 7
        assert week["by_day"][today()] == {"sent": 3, "received": 1}

        everything = client.get("/v1/stats", params={"days": 1}).json()
        assert (everything["total"], everything["sent"], everything["received"]) == (7, 4, 3)
        assert everything["by_day"] == {today(): {"sent": 4, "received": 3}}

        # Turning history back on keeps the bodies of new messages.
        patched = client.patch(f"/v1/sessions/{quiet}", json={"settings": {"message_history": True}})
        assert patched.status_code == 200 and patched.json()["settings"]["message_history"] is True
        unchanged = client.patch(f"/v1/sessions/{quiet}", json={"settings": {"message_history": None}})
        assert unchanged.json()["settings"]["message_history"] is True
        traffic(client, quiet, received=1, sent=0)
        newest = client.get(f"/v1/sessions/{quiet}/messages", params={"limit": 1}).json()["messages"][0]
        assert newest["text"] == "secret in 0"
        assert client.get(f"/v1/sessions/{quiet}/stats").json()["received"] == 3


def test_stats_are_scoped_to_the_keys_owner(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server()
    alice_key, bob_key = server.create_key("alice"), server.create_key("bob")
    with api_client(server.base_url, alice_key) as alice, api_client(server.base_url, bob_key) as bob, \
            api_client(server.base_url, server.admin_key) as admin:
        alices = linked_session(alice, "alice-shop")
        bobs = linked_session(bob, "bob-shop")
        traffic(alice, alices, received=2, sent=0)
        traffic(bob, bobs, received=0, sent=1)
        assert alice.get("/v1/stats").json()["received"] == 2 and alice.get("/v1/stats").json()["total"] == 2
        assert bob.get("/v1/stats").json()["sent"] == 1 and bob.get("/v1/stats").json()["total"] == 1
        assert admin.get("/v1/stats").json()["total"] == 3
        hidden = bob.get(f"/v1/sessions/{alices}/stats")
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "SESSION_NOT_FOUND"
        assert admin.get(f"/v1/sessions/{alices}/stats").json()["total"] == 2
        nobody = api_client(server.base_url, server.create_key("carol"))
        with nobody:
            empty = nobody.get("/v1/stats").json()
            assert (empty["total"], empty["by_type"], empty["last_activity"]) == (0, {}, None)


def test_days_out_of_range_is_a_validation_error(client: httpx.Client) -> None:
    session_id = client.post("/v1/sessions", json={"name": "idle", "start": False}).json()["session_id"]
    for path in (f"/v1/sessions/{session_id}/stats", "/v1/stats"):
        for days in ("0", "367", "-1", "many"):
            answer = client.get(path, params={"days": days})
            assert answer.status_code == 422, (path, days, answer.text)
            assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
            assert answer.json()["error"]["message"]
        assert client.get(path, params={"days": 366}).status_code == 200
    assert client.get("/v1/sessions/ses_missing/stats").json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert client.get("/v1/stats").json() == {
        "total": 0, "sent": 0, "received": 0, "failed": 0, "pending": 0, "by_type": {},
        "by_day": client.get("/v1/stats").json()["by_day"], "last_activity": None,
    }


def test_the_routes_are_in_the_openapi_schema(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/v1/sessions/{session_id}/stats", "/v1/stats"):
        get = schema["paths"][path]["get"]
        assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MessageStats"}
        assert "422" in get["responses"]
        days = next(p for p in get["parameters"] if p["name"] == "days")
        assert (days["schema"]["minimum"], days["schema"]["maximum"]) == (1, 366)
    assert "message_history" in schema["components"]["schemas"]["SessionSettingsView"]["properties"]
