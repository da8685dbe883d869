"""Streams are bounded and ended (issue 11, items 3, 5 and 11): caps per key and in total, a
revoked key's streams end within seconds, every stream says `retry:`, and a per-session
stream opened after linking sends the real `connected` event (with `jid`) under its own id."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from httpx_sse import SSEError, connect_sse
from serve_process import REPO
from server_helpers import api_client, decode, read_until
from test_server_resume import link

from watui.server import BackgroundServer


def open_stream(stack: ExitStack, client: httpx.Client, url: str = "/v1/events") -> httpx.Response:
    response = stack.enter_context(client.stream("GET", url))
    return response


def test_streams_are_capped_per_key_and_in_total(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(max_streams_per_key=3, max_streams=5)
    bob = server.create_key("bob")
    with api_client(server.base_url, bob) as client, api_client(server.base_url, server.admin_key) as admin, \
            ExitStack() as stack:
        for _ in range(3):
            assert open_stream(stack, client).status_code == 200
        refused = client.get("/v1/events")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
        assert refused.json()["error"]["details"] == {"max_streams_per_key": 3}
        # Per-session streams count too.
        sid = admin.post("/v1/sessions", json={"name": "x", "start": False}).json()["session_id"]
        assert admin.patch(f"/v1/sessions/{sid}", json={"name": "x2"}).status_code == 200
        # Admin keys are bounded by the total only.
        assert open_stream(stack, admin).status_code == 200
        assert open_stream(stack, admin, f"/v1/sessions/{sid}/stream").status_code == 200
        total = admin.get("/v1/events")
        assert total.status_code == 429 and total.json()["error"]["details"] == {"max_streams": 5}
    # Every stream above was closed by its client: the places are free again.
    assert server.server is not None
    streams = server.server.watui.streams
    deadline = time.monotonic() + 10
    while streams.count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert streams.count == 0
    with api_client(server.base_url, bob) as client, ExitStack() as stack:
        assert [open_stream(stack, client).status_code for _ in range(3)] == [200, 200, 200]


def test_a_key_revoked_by_the_cli_ends_its_open_streams(server: BackgroundServer) -> None:
    manager = server.manager
    assert manager is not None
    key, secret = server.call(lambda: manager.store.create_api_key("carol"))
    ended = threading.Event()
    frames: list[str] = []

    def listen() -> None:
        with api_client(server.base_url, secret) as client, client.stream("GET", "/v1/events") as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                frames.append(line)
        ended.set()

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not frames and time.monotonic() < deadline:
        time.sleep(0.02)
    assert frames, "the stream opened"
    # Another process revokes the key in the same database, as an operator would.
    revoke = subprocess.run(
        [sys.executable, "-m", "watui", "keys", "revoke", key.id, "--data-dir", str(server.settings.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert revoke.returncode == 0, revoke.stderr
    revoked_at = time.monotonic()
    assert ended.wait(10), "the revoked key's stream ended"
    assert time.monotonic() - revoked_at < 5
    with api_client(server.base_url, secret) as client:
        assert client.get("/v1/events").status_code == 401


def test_every_stream_starts_with_retry(client: httpx.Client) -> None:
    with client.stream("GET", "/v1/events") as response:
        first = next(response.iter_lines())
    assert first == "retry: 3000"


def test_a_stream_opened_after_linking_sends_the_connected_event_with_its_jid(client: httpx.Client) -> None:
    session_id = link(client, "linked")
    events = read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: False)
    kinds = [e.event for e in events]
    assert kinds == ["status", "connected"]
    connected = decode(events[-1])
    assert connected["jid"] and connected["jid"] == client.get(f"/v1/sessions/{session_id}").json()["jid"]
    ids = [int(e.id) for e in events]
    assert len(set(ids)) == len(ids) and ids == sorted(ids), "each frame has its own id, in order"
    # It is the live event itself: the log holds it under the same id, with the same data.
    logged = read_until(client, "/v1/events?last_event_id=0", lambda e: int(e.id) >= ids[-1])
    assert decode(logged[-1]) == connected and logged[-1].event == "connected"
    # Reconnecting with the last id says the stream is over: 204.
    again = client.get(f"/v1/sessions/{session_id}/stream", headers={"Last-Event-ID": str(ids[-1])})
    assert again.status_code == 204


def test_snapshot_frames_of_a_session_showing_its_qr_have_distinct_ids(client: httpx.Client) -> None:
    session_id = client.post("/v1/sessions", json={"name": "waiting"}).json()["session_id"]
    events = read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    time.sleep(0.1)
    # A second client arrives while the code is up: it gets the state at once.
    snapshot = read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    assert [e.event for e in snapshot] == ["status", "qr"]
    ids = [int(e.id) for e in snapshot]
    assert ids[0] < ids[1]
    assert decode(snapshot[1])["qr_data"].startswith("data:image/png;base64,")
    assert decode(snapshot[1])["qr_text"] == decode(events[-1])["qr_text"] or int(events[-1].id) < ids[1]


def test_python_callers_see_the_204_before_reading_events(client: httpx.Client) -> None:
    """What docs/api.md tells Python callers: check the status before iterating."""
    session_id = link(client, "done")
    events = read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: False)
    last_id = events[-1].id
    got: list[Any] = []
    with connect_sse(client, "GET", f"/v1/sessions/{session_id}/stream",
                     headers={"Last-Event-ID": last_id}) as source:
        if source.response.status_code == 204:
            got.append("over")
        else:
            got.extend(source.iter_sse())
    assert got == ["over"]
    with connect_sse(client, "GET", f"/v1/sessions/{session_id}/stream",
                     headers={"Last-Event-ID": last_id}) as source, pytest.raises(SSEError):
        list(source.iter_sse())  # without the check, httpx-sse refuses the empty answer
