"""Pacing over real HTTP (a uvicorn on loopback): a paced session answers sends ``202``
``pending``, the ``message_status`` events on ``/v1/events`` settle them in order, and a full
queue is ``429 SEND_QUEUE_FULL`` with ``Retry-After``; the settings round-trip."""

from __future__ import annotations

import json
from collections.abc import Callable

from server_helpers import api_client, linked_session, read_until

from watui.server import BackgroundServer

TO = "+14155550123"


def test_paced_sends_are_accepted_queued_and_settle_in_order(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server()
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "paced", send_rate=600, warmup={"days": 7, "start_rate": 300})
        settings = client.get(f"/v1/sessions/{session_id}").json()["settings"]
        assert settings["send_rate"] == 600 and settings["warmup"] == {"days": 7, "start_rate": 300}
        sent = []
        for n in range(4):
            answer = client.post(f"/v1/sessions/{session_id}/messages", json={"to": TO, "text": f"paced {n}"})
            assert answer.status_code == 202, answer.text
            body = answer.json()
            assert body["status"] == "pending" and body["message_id"] is None and body["text"] == f"paced {n}"
            sent.append(body["id"])
        settled: list[dict[str, object]] = []

        def done(event: object) -> bool:
            payload = json.loads(event.data)  # type: ignore[attr-defined]
            if event.event == "message_status" and "id" in payload:  # type: ignore[attr-defined]
                settled.append(payload)
            return len(settled) == len(sent)

        read_until(client, "/v1/events", done, headers={"Last-Event-ID": "0"})
        assert [p["id"] for p in settled] == sent
        assert all(p["status"] == "sent" and p["message_id"] for p in settled)
        page = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
        assert [m["status"] for m in page if m["id"] in sent] == ["sent"] * 4
        stats = client.get(f"/v1/sessions/{session_id}/stats").json()
        assert stats["pending"] == 0 and stats["sent"] == 4


def test_a_full_queue_answers_429_with_retry_after(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(send_queue_limit=2)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "slow", send_rate=1)  # one a minute
        statuses = [client.post(f"/v1/sessions/{session_id}/messages", json={"to": TO, "text": f"m{n}"})
                    for n in range(4)]
        codes = [r.status_code for r in statuses]
        # The first may already have left (a quiet session's first send goes at once): then
        # two more fit; either way the queue never holds more than 2 and the rest is refused.
        assert codes[:2] == [202, 202] and codes[-1] == 429, codes
        refused = statuses[-1]
        error = refused.json()["error"]
        assert error["code"] == "SEND_QUEUE_FULL" and error["details"]["limit"] == 2
        assert 1 <= int(refused.headers["Retry-After"]) <= 78
        stats = client.get(f"/v1/sessions/{session_id}/stats").json()
        assert stats["pending"] == 2
        # Turning pacing off sends what waits, in order.
        patched = client.patch(f"/v1/sessions/{session_id}", json={"settings": {"send_rate": None}})
        assert patched.status_code == 200 and patched.json()["settings"]["send_rate"] is None
        read_until(client, "/v1/events", lambda e: e.event == "message_status"
                   and json.loads(e.data).get("id") == statuses[codes.index(429) - 1].json()["id"],
                   headers={"Last-Event-ID": "0"})
        assert client.get(f"/v1/sessions/{session_id}/stats").json()["pending"] == 0


def test_pacing_settings_are_checked(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server()
    with api_client(server.base_url, server.admin_key) as client:
        for bad in ({"send_rate": 0}, {"send_rate": 100000}, {"send_rate": 5, "warmup": {"days": 0}},
                    {"send_rate": 5, "warmup": {"days": 3, "pace": 1}}):
            answer = client.post("/v1/sessions", json={"name": "bad", "settings": bad})
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
