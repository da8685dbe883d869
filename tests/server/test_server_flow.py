"""The seed acceptance, end to end over a real uvicorn: create, stream QR codes, scan, connected."""

from __future__ import annotations

import base64
import json

import httpx
from httpx_sse import ServerSentEvent
from qr_helpers import scan_png
from server_helpers import api_client, decode, read_until

from watui.server import BackgroundServer


def png_of(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return base64.b64decode(data_url[len(prefix):], validate=True)


def test_seed_flow_qr_scan_connected_then_204(server: BackgroundServer, client: httpx.Client) -> None:
    created = client.post("/v1/sessions", json={"name": "shop"})
    assert created.status_code == 201
    body = created.json()
    session_id = body["session_id"]
    assert body["session"]["id"] == session_id
    assert body["stream_url"] == f"{server.base_url}/v1/sessions/{session_id}/stream"
    assert created.headers["location"] == f"{server.base_url}/v1/sessions/{session_id}"

    scanned: list[str] = []

    def on_event(event: ServerSentEvent) -> None:
        data = decode(event)
        if event.event == "qr" and not scanned:
            # The phone reads the PNG, and it must say what qr_text says.
            assert scan_png(png_of(data["qr_data"])) == data["qr_text"]
            scanned.append(data["qr_text"])
            sim = client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
            assert sim.status_code == 200, sim.text

    # The server ends the stream by itself after `connected`; no stop condition needed.
    events = read_until(client, body["stream_url"], lambda e: False, on_event=on_event)

    assert scanned, "a qr event came before the session connected"
    assert events[-1].event == "connected"
    connected = decode(events[-1])
    assert connected["session_id"] == session_id and connected["phone_number"]
    for event in events:
        assert event.id and event.id.isdigit(), "every frame carries id:"
        data = decode(event)
        assert data["session_id"] == session_id
        assert data["timestamp"].endswith("Z") and "." in data["timestamp"]
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids)
    assert [e.event for e in events if e.event == "status"]
    assert client.get(f"/v1/sessions/{session_id}").json()["status"] == "connected"

    # A browser's EventSource reconnects with the last id it saw: 204 tells it to stop.
    again = client.get(body["stream_url"], headers={"Last-Event-ID": events[-1].id})
    assert again.status_code == 204
    # A fresh stream on a connected session says so at once and ends too.
    fresh = read_until(client, body["stream_url"], lambda e: False)
    assert [e.event for e in fresh] == ["status", "connected"]
    assert decode(fresh[0])["to"] == "connected"
    again = client.get(body["stream_url"], headers={"Last-Event-ID": fresh[-1].id})
    assert again.status_code == 204


def test_stream_starts_with_the_live_qr_and_resumes_before_the_close(client: httpx.Client) -> None:
    session_id = client.post("/v1/sessions", json={"name": "late"}).json()["session_id"]
    url = f"/v1/sessions/{session_id}/stream"
    # Wait for the first code through the stream itself, then open a second stream:
    # it must start with the current state, QR included.
    read_until(client, url, lambda e: e.event == "qr")
    qr = client.get(f"/v1/sessions/{session_id}/qr").json()
    first = read_until(client, url, lambda e: e.event == "qr")
    assert [e.event for e in first] == ["status", "qr"]
    assert decode(first[0])["to"] == "qr_ready"
    snapshot_qr = decode(first[1])
    assert snapshot_qr["qr_text"] == qr["qr_text"] and snapshot_qr["generation"] == qr["generation"]
    assert scan_png(png_of(snapshot_qr["qr_data"])) == qr["qr_text"]

    # Dropped before `connected`: a reconnect with Last-Event-ID is not 204, and replays
    # what came after it, up to and including `connected`, then ends.
    resume_from = first[-1].id
    assert client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"}).status_code == 200
    rest = read_until(client, url, lambda e: False, headers={"Last-Event-ID": resume_from})
    assert rest[-1].event == "connected"
    assert all(int(e.id) > int(resume_from) for e in rest)
    assert [decode(e)["to"] for e in rest if e.event == "status"] == ["connecting", "connected"]


def test_qr_route_json_png_and_409(client: httpx.Client) -> None:
    stopped = client.post("/v1/sessions", json={"name": "idle", "start": False}).json()["session_id"]
    refused = client.get(f"/v1/sessions/{stopped}/qr")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "QR_NOT_AVAILABLE"

    session_id = client.post("/v1/sessions", json={"name": "qr"}).json()["session_id"]
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    as_json = client.get(f"/v1/sessions/{session_id}/qr")
    assert as_json.status_code == 200
    qr = as_json.json()
    assert set(qr) >= {"qr_data", "qr_text", "generation", "expires_at"}
    as_png = client.get(f"/v1/sessions/{session_id}/qr", headers={"Accept": "image/png"})
    assert as_png.status_code == 200 and as_png.headers["content-type"] == "image/png"
    assert scan_png(as_png.content) == qr["qr_text"]
    assert png_of(qr["qr_data"]) == as_png.content


def test_access_token_query_for_browsers_and_pings_while_idle(server: BackgroundServer) -> None:
    key = server.admin_key
    with api_client(server.base_url) as anonymous:
        session_id = api_client(server.base_url, key).post(
            "/v1/sessions", json={"name": "quiet", "start": False}
        ).json()["session_id"]
        assert anonymous.get(f"/v1/sessions/{session_id}/stream").status_code == 401
        # Raw lines: the idle stream must send `: ping` comments (every 0.2 s here).
        lines: list[str] = []
        with anonymous.stream("GET", f"/v1/sessions/{session_id}/stream",
                              params={"access_token": key}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(": ping"):
                    break
        # The stream says first how long to wait before reconnecting.
        assert lines[:2] == ["retry: 3000", ""]
        assert lines[2].startswith("id: ")
        assert lines[3] == "event: status"
        assert json.loads(lines[4].removeprefix("data: "))["to"] == "stopped"
        # access_token is for the SSE routes only.
        assert anonymous.get("/v1/sessions", params={"access_token": key}).status_code == 401


def test_pair_code_by_phone_number(client: httpx.Client) -> None:
    session_id = client.post("/v1/sessions", json={"name": "by-phone", "start": False}).json()["session_id"]
    bad = client.post(f"/v1/sessions/{session_id}/pair-code", json={"phone_number": "12"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
    ok = client.post(f"/v1/sessions/{session_id}/pair-code", json={"phone_number": "+1 415 555 0123"})
    assert ok.status_code == 200, ok.text
    code = ok.json()
    assert code["session_id"] == session_id and len(code["code"]) == 8 and code["expires_at"]
    assert client.get(f"/v1/sessions/{session_id}").json()["status"] == "qr_ready"


def test_lifecycle_routes_and_messages(client: httpx.Client) -> None:
    session_id = client.post("/v1/sessions", json={"name": "life", "start": False}).json()["session_id"]
    assert client.post(f"/v1/sessions/{session_id}/stop").json()["error"]["code"] == "INVALID_TRANSITION"
    assert client.post(f"/v1/sessions/{session_id}/start").json()["status"] in ("initializing", "qr_ready")
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    not_yet = client.post(f"/v1/sessions/{session_id}/messages", json={"to": "+14155550123", "text": "hi"})
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "SESSION_NOT_CONNECTED"
    client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: False)  # ends on connected

    sent = client.post(f"/v1/sessions/{session_id}/messages", json={"to": "+14155550123", "text": "hi"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["direction"] == "out" and sent.json()["chat"] == "14155550123"
    received = client.post(f"/v1/sessions/{session_id}/simulate",
                           json={"action": "message", "text": "hello back", "chat": "+14155550123"})
    assert received.status_code == 200
    page = client.get(f"/v1/sessions/{session_id}/messages").json()
    assert page["total"] == 2
    assert [m["text"] for m in page["messages"]] == ["hello back", "hi"]  # newest first

    patched = client.patch(f"/v1/sessions/{session_id}",
                           json={"description": "front desk",
                                 # Loopback, port 9: refused at once, never the network.
                                 "settings": {"webhook_url": "http://127.0.0.1:9/hook"}})
    assert patched.status_code == 200
    assert patched.json()["description"] == "front desk"
    # The server generated a secret for the new URL: shown in this answer, masked afterwards.
    assert patched.json()["settings"]["webhook_secret"].startswith("whsec_")
    assert client.get(f"/v1/sessions/{session_id}").json()["settings"]["webhook_secret"] == "whsec_…"
    client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "message", "text": "to the hook"})
    deliveries = client.get(f"/v1/sessions/{session_id}/webhooks/deliveries")
    assert deliveries.status_code == 200, deliveries.text
    page = deliveries.json()
    assert page["total"] >= 1 and page["deliveries"][0]["url"] == "http://127.0.0.1:9/hook"

    assert client.post(f"/v1/sessions/{session_id}/logout").json()["status"] == "disconnected"
    assert client.post(f"/v1/sessions/{session_id}/restart").json()["status"] in ("initializing", "qr_ready")
    assert client.post(f"/v1/sessions/{session_id}/stop").json()["status"] == "stopped"
    assert client.delete(f"/v1/sessions/{session_id}").status_code == 204
    assert client.get(f"/v1/sessions/{session_id}").status_code == 404
