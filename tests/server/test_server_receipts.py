"""Receipts over HTTP: a sent message's `message_status` frames on /v1/events, and its status
in the message list, through a real uvicorn."""

from __future__ import annotations

from collections.abc import Callable

from server_helpers import api_client, decode, read_until

from watui.engines.simulated import SimulatedEngine
from watui.server import BackgroundServer


def quick_receipts() -> SimulatedEngine:
    return SimulatedEngine(connect_latency=0.01, link_latency=0.02, seed="receipts", receipt_delay=0.05)


def test_message_status_events_reach_sse_and_the_message_list(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(engine_factory=quick_receipts)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = client.post("/v1/sessions", json={"name": "shop"}).json()["session_id"]
        read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
        client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
        read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "connected")
        sent = client.post(f"/v1/sessions/{session_id}/messages", json={"to": "+14155550100", "text": "hi"})
        assert sent.status_code == 201
        message_id = sent.json()["message_id"]
        frames = read_until(
            client, "/v1/events", lambda e: e.event == "message_status" and decode(e)["status"] == "read",
            headers={"Last-Event-ID": "0"},
        )
        statuses = [decode(e) for e in frames if e.event == "message_status"]
        assert [(s["message_id"], s["status"], s["chat"], s["session_id"]) for s in statuses] == [
            (message_id, "delivered", "14155550100", session_id),
            (message_id, "read", "14155550100", session_id),
        ]
        assert all("timestamp" in s for s in statuses)
        listed = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
        assert [(m["message_id"], m["status"]) for m in listed] == [(message_id, "read")]
