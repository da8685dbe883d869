"""``/v1/events`` resumes after ``Last-Event-ID`` with no gap and no duplicate: within one
server, after ``kill -9`` and a restart, and after a graceful SIGTERM shutdown (which also
brings linked sessions back by themselves)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import httpx
from httpx_sse import ServerSentEvent, connect_sse
from serve_process import ServerProcess
from server_helpers import api_client, decode, read_until

from watui.server import BackgroundServer


def replay(client: httpx.Client, after: int, until_id: int) -> list[ServerSentEvent]:
    """Everything the log holds after ``after`` up to ``until_id``, read back over SSE."""
    return read_until(client, f"/v1/events?last_event_id={after}", lambda e: int(e.id) >= until_id)


def link(client: httpx.Client, name: str) -> str:
    """Create a session and scan its QR code; returns once it is connected."""
    session_id: str = client.post("/v1/sessions", json={"name": name}).json()["session_id"]
    url = f"/v1/sessions/{session_id}/stream"

    def scan(event: ServerSentEvent) -> None:
        if event.event == "qr":
            client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})

    events = read_until(client, url, lambda e: False, on_event=scan)
    assert events[-1].event == "connected"
    return session_id


def test_resume_with_header_and_query_no_gap_no_duplicate(client: httpx.Client) -> None:
    marker = client.post("/v1/sessions", json={"name": "m0", "start": False}).json()["session_id"]
    first = read_until(client, "/v1/events?last_event_id=0", lambda e: decode(e)["session_id"] == marker)
    assert [int(e.id) for e in first] == list(range(1, len(first) + 1)), "the log has no holes"

    # While nobody listens, things happen.
    for n in range(5):
        sid = client.post("/v1/sessions", json={"name": f"s{n}", "start": n % 2 == 0}).json()["session_id"]
        if n % 2 == 0:
            client.post(f"/v1/sessions/{sid}/stop")
    last = client.post("/v1/sessions", json={"name": "m1", "start": False}).json()["session_id"]

    resumed = read_until(client, "/v1/events", lambda e: decode(e)["session_id"] == last,
                         headers={"Last-Event-ID": first[-1].id})
    also = read_until(client, f"/v1/events?last_event_id={first[-1].id}",
                      lambda e: decode(e)["session_id"] == last)
    assert [e.id for e in also] == [e.id for e in resumed]
    ids = [int(e.id) for e in first + resumed]
    assert ids == list(range(1, ids[-1] + 1)), "contiguous: no gap, no duplicate"
    whole = replay(client, 0, ids[-1])
    assert [(e.id, e.event, e.data) for e in whole] == [(e.id, e.event, e.data) for e in first + resumed]
    # The header wins over the query string.
    both = read_until(client, "/v1/events?last_event_id=0", lambda e: True,
                      headers={"Last-Event-ID": str(ids[-2])})
    assert both[0].id == str(ids[-1])


def test_events_are_scoped_to_the_owner(server: BackgroundServer, client: httpx.Client) -> None:
    alice = api_client(server.base_url, server.create_key("alice"))
    bob = api_client(server.base_url, server.create_key("bob"))
    with alice, bob:
        bob.post("/v1/sessions", json={"name": "bob-secret", "start": False})
        mark = alice.post("/v1/sessions", json={"name": "alice-1", "start": False}).json()["session_id"]
        seen = read_until(alice, "/v1/events?last_event_id=0", lambda e: decode(e)["session_id"] == mark)
        assert {decode(e)["session_id"] for e in seen} == {mark}
        everything = read_until(client, "/v1/events?last_event_id=0", lambda e: decode(e)["session_id"] == mark)
        assert len({decode(e)["session_id"] for e in everything}) == 2


def test_resume_across_kill_9_and_restart(spawn_server: Callable[..., ServerProcess]) -> None:
    first = spawn_server()
    data_dir = first.data_dir
    with api_client(first.base_url, first.admin_key) as client:
        linked = link(client, "linked")
        parked = client.post("/v1/sessions", json={"name": "parked", "start": False}).json()["session_id"]
        seen = read_until(client, "/v1/events?last_event_id=0", lambda e: decode(e)["session_id"] == parked)
        # More happens after the client went away, then the process dies without warning.
        unseen = client.post("/v1/sessions", json={"name": "unseen", "start": False}).json()["session_id"]
        client.patch(f"/v1/sessions/{unseen}", json={"description": "still there after the crash"})
    first.kill()

    second = spawn_server(data_dir)
    with api_client(second.base_url, second.admin_key) as client:
        reconnected: list[ServerSentEvent] = []

        def done(event: ServerSentEvent) -> bool:
            data = decode(event)
            if event.event == "connected" and data["session_id"] == linked:
                reconnected.append(event)
            return bool(reconnected)

        resumed = read_until(client, "/v1/events", done, headers={"Last-Event-ID": seen[-1].id})
        ids = [int(e.id) for e in seen + resumed]
        assert len(ids) == len(set(ids)) and ids == sorted(ids), "no duplicate, in order"
        whole = replay(client, 0, ids[-1])
        assert [int(e.id) for e in whole] == ids, "no gap across the crash"
        assert any(decode(e)["session_id"] == unseen for e in resumed), "events the client missed"
        # The linked session came back by itself, without a new QR scan.
        after_crash = [e for e in resumed if decode(e)["session_id"] == linked]
        assert "qr" not in {e.event for e in after_crash}
        assert client.get(f"/v1/sessions/{linked}").json()["status"] == "connected"
        assert client.get(f"/v1/sessions/{parked}").json()["status"] == "stopped"
        assert client.get(f"/v1/sessions/{unseen}").json()["description"] == "still there after the crash"


def test_sigterm_ends_streams_and_restart_restores(spawn_server: Callable[..., ServerProcess]) -> None:
    first = spawn_server()
    data_dir = first.data_dir
    assert first.admin_key in "".join(first.output), "the first admin key is printed once"
    with api_client(first.base_url, first.admin_key) as client:
        linked = link(client, "linked")
        waiting = client.post("/v1/sessions", json={"name": "waiting"}).json()["session_id"]
        read_until(client, f"/v1/sessions/{waiting}/stream", lambda e: e.event == "qr")

        opened = threading.Event()
        ended: list[str] = []

        def listen() -> None:
            with connect_sse(client, "GET", "/v1/events") as source:
                opened.set()
                for _ in source.iter_sse():
                    pass
            ended.append("clean")

        listener = threading.Thread(target=listen)
        listener.start()
        assert opened.wait(10)
        code = first.terminate()
        listener.join(10)
        assert not listener.is_alive() and ended == ["clean"], "the open stream ended by itself"
    assert code in (0, -signal.SIGTERM)
    log = "".join(first.output)
    assert "Traceback" not in log and "timeout graceful shutdown exceeded" not in log

    second = spawn_server(data_dir)
    assert second.admin_key not in "".join(second.output), "no new admin key on a restart"
    with api_client(second.base_url, second.admin_key) as client:
        read_until(client, f"/v1/sessions/{linked}/stream", lambda e: False)  # ends on connected
        assert client.get(f"/v1/sessions/{linked}").json()["status"] == "connected"
        # The session that was waiting for a scan is waiting again, with a fresh code.
        events = read_until(client, f"/v1/sessions/{waiting}/stream", lambda e: e.event == "qr")
        assert events[-1].event == "qr"
        shutdown = read_until(client, "/v1/events?last_event_id=0",
                              lambda e: decode(e)["session_id"] == linked and decode(e).get("reason") == "shutdown")
        assert decode(shutdown[-1])["to"] == "disconnected", "parked cleanly by the shutdown"
