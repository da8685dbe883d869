"""Cluster routing: a call for a session that runs on another node is answered by that node.

Two real servers on loopback ports: ``front`` (the node the client calls, with a Locator that
places the test's sessions on ``owner``) and ``owner`` (where they really run). Each has its
own SQLite store, so ``front`` could not answer these calls itself: a right answer proves it
was forwarded. The key is made valid on both, as one cluster database would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from routing_helpers import MapLocator, RawPeer, free_port, share_key
from server_helpers import api_client, read_until

from watui.cluster.identity import SIGNATURE, sign
from watui.cluster.routing import FORWARDED_BY, owner_call, placing_call
from watui.cluster.types import Holder, NodeInfo
from watui.errors import StoreUnavailable
from watui.models import utcnow
from watui.server import BackgroundServer

TO = "+14155550123"


@pytest.mark.parametrize(("method", "path", "routed"), [
    ("POST", "/v1/sessions/ses_1/start", True),
    ("POST", "/v1/sessions/ses_1/stop", True),
    ("POST", "/v1/sessions/ses_1/restart", True),
    ("POST", "/v1/sessions/ses_1/logout", True),
    ("POST", "/v1/sessions/ses_1/pair-code", True),
    ("POST", "/v1/sessions/ses_1/messages", True),
    ("POST", "/v1/sessions/ses_1/simulate", True),
    ("PATCH", "/v1/sessions/ses_1", True),
    ("DELETE", "/v1/sessions/ses_1", True),
    ("GET", "/v1/sessions/ses_1/qr", True),
    ("GET", "/v1/sessions/ses_1", False),
    ("GET", "/v1/sessions/ses_1/events", False),
    ("GET", "/v1/sessions/ses_1/messages", False),
    ("GET", "/v1/sessions/ses_1/stream", False),
    ("GET", "/v1/sessions/ses_1/webhooks/deliveries", False),
    ("HEAD", "/v1/sessions/ses_1/qr", False),
    ("POST", "/v1/sessions", False),  # unless this node is full: see placing_call
    ("GET", "/v1/sessions", False),
    ("POST", "/v1/bulk/sessions", False),
    ("GET", "/v1/events", False),
])
def test_which_calls_go_to_the_owner(method: str, path: str, routed: bool) -> None:
    assert owner_call(method, path) == ("ses_1" if routed else None)


@dataclass
class Pair:
    """Two nodes, each with its own locator, both accepting the owner's admin key."""

    front: BackgroundServer
    owner: BackgroundServer
    front_locator: MapLocator
    owner_locator: MapLocator


@pytest.fixture
def pair(start_server: Callable[..., BackgroundServer]) -> Pair:
    owner_locator, front_locator = MapLocator("node-b"), MapLocator("node-a")
    owner = start_server(node_id="node-b", locator=owner_locator, route_timeout=5)
    front = start_server(node_id="node-a", locator=front_locator, route_timeout=5)
    share_key(owner, front, owner.admin_key)
    return Pair(front, owner, front_locator, owner_locator)


def place(locator: MapLocator, session_id: str, node: BackgroundServer | RawPeer, node_id: str = "node-b") -> None:
    locator.placement[session_id] = Holder(node_id, node.base_url if isinstance(node, BackgroundServer) else node.url)


@pytest.mark.parametrize(("method", "path", "placing"), [
    ("POST", "/v1/sessions", True),
    ("POST", "/v1/sessions/ses_1/start", True),
    ("POST", "/v1/sessions/ses_1/restart", True),
    ("POST", "/v1/sessions/ses_1/stop", False),
    ("GET", "/v1/sessions", False),
    ("POST", "/v1/bulk/sessions", False),
])
def test_which_calls_go_to_a_node_with_room_when_this_one_is_full(method: str, path: str, placing: bool) -> None:
    assert placing_call(method, path) is placing


def test_a_full_node_places_creates_and_starts_on_a_node_with_room(pair: Pair) -> None:
    front, owner = pair.front, pair.owner
    pair.front_locator.room = Holder("node-b", owner.base_url)  # front is at its capacity
    with api_client(front.base_url, owner.admin_key) as via, api_client(owner.base_url, owner.admin_key) as direct:
        created = via.post("/v1/sessions", json={"name": "placed", "start": True})
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        assert direct.get(f"/v1/sessions/{sid}").json()["status"] in ("initializing", "qr_ready")
        assert via.get(f"/v1/sessions/{sid}").status_code == 404  # front never had it
        assert direct.post(f"/v1/sessions/{sid}/stop").status_code == 200
        assert via.post(f"/v1/sessions/{sid}/start").status_code == 200
        assert direct.get(f"/v1/sessions/{sid}").json()["status"] in ("initializing", "qr_ready")
        pair.front_locator.room = None  # room again here: front answers itself
        assert via.post("/v1/sessions", json={"name": "here", "start": False}).status_code == 201
        assert [s["name"] for s in direct.get("/v1/sessions").json()["sessions"]] == ["placed"]


def test_forwarded_calls_get_the_owners_exact_answers(pair: Pair) -> None:
    front, owner, locator = pair.front, pair.owner, pair.front_locator
    with api_client(front.base_url, owner.admin_key) as via, api_client(owner.base_url, owner.admin_key) as direct:
        sid = direct.post("/v1/sessions", json={"name": "routed", "start": False}).json()["session_id"]
        place(locator, sid, owner)

        # Reads are answered by the node called: front's own store has no such session.
        assert via.get(f"/v1/sessions/{sid}").json()["error"]["code"] == "SESSION_NOT_FOUND"

        # A refusal passes through unchanged: status, headers that matter, body.
        refused, expected = via.post(f"/v1/sessions/{sid}/stop"), direct.post(f"/v1/sessions/{sid}/stop")
        assert refused.status_code == expected.status_code == 409
        assert refused.json() == expected.json()
        assert refused.json()["error"]["code"] == "INVALID_TRANSITION"
        assert refused.headers["content-type"] == expected.headers["content-type"]
        bad, expected = (c.post(f"/v1/sessions/{sid}/pair-code", json={"phone_number": 5}) for c in (via, direct))
        assert bad.status_code == expected.status_code == 422 and bad.json() == expected.json()

        started = via.post(f"/v1/sessions/{sid}/start")
        assert started.status_code == 200 and started.json()["status"] in ("initializing", "qr_ready")
        read_until(direct, f"/v1/sessions/{sid}/stream", lambda e: e.event == "qr")

        qr, expected = via.get(f"/v1/sessions/{sid}/qr"), direct.get(f"/v1/sessions/{sid}/qr")
        assert qr.status_code == 200 and qr.json() == expected.json()
        assert qr.headers["cache-control"] == "no-store"
        png, expected = (c.get(f"/v1/sessions/{sid}/qr", headers={"Accept": "image/png"}) for c in (via, direct))
        assert png.headers["content-type"] == "image/png"
        assert png.headers["x-qr-generation"] == expected.headers["x-qr-generation"]
        assert png.content == expected.content and png.content.startswith(b"\x89PNG")
        assert int(png.headers["content-length"]) == len(png.content)

        assert via.post(f"/v1/sessions/{sid}/simulate", json={"action": "scan"}).status_code == 200
        read_until(direct, f"/v1/sessions/{sid}/stream", lambda e: False)  # ends on connected

        sent = via.post(f"/v1/sessions/{sid}/messages", json={"to": TO, "text": "hi"})
        assert sent.status_code == 201, sent.text
        assert sent.json()["id"] in [m["id"] for m in direct.get(f"/v1/sessions/{sid}/messages").json()["messages"]]

        patched = via.patch(f"/v1/sessions/{sid}", json={"description": "routed desk"})
        assert patched.status_code == 200 and patched.json() == direct.get(f"/v1/sessions/{sid}").json()
        stopped = via.post(f"/v1/sessions/{sid}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert stopped.json() == direct.get(f"/v1/sessions/{sid}").json()

        deleted = via.delete(f"/v1/sessions/{sid}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert direct.get(f"/v1/sessions/{sid}").status_code == 404


def test_the_call_is_forwarded_whole_and_the_answer_handed_on_whole(
    start_server: Callable[..., BackgroundServer],
) -> None:
    """What the owner receives (method, path, query, body, key, Host, the forwarded-by mark)
    and what the client gets back (status, Location, Retry-After, content type, body)."""
    reply = (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/vnd.test+json\r\n"
             b"Location: http://example.test/v1/sessions/ses_x\r\nRetry-After: 7\r\n"
             b"X-Custom: kept\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"ok\": true }")
    peer = RawPeer(reply)
    locator = MapLocator("node-a")
    front = start_server(node_id="node-a", locator=locator)
    try:
        place(locator, "ses_x", peer)
        with api_client(front.base_url, front.admin_key) as via:
            answer = via.post("/v1/sessions/ses_x/messages?dry=1&x=%20y", json={"to": TO, "text": "é"},
                              headers={"X-Trace": "t-1"})
        assert answer.status_code == 202
        assert answer.content == b'{"ok": true }'
        assert answer.headers["content-type"] == "application/vnd.test+json"
        assert answer.headers["location"] == "http://example.test/v1/sessions/ses_x"
        assert answer.headers["retry-after"] == "7" and answer.headers["x-custom"] == "kept"

        [raw] = peer.requests
        head, _, body = raw.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        assert request_line == "POST /v1/sessions/ses_x/messages?dry=1&x=%20y HTTP/1.1"
        assert headers["authorization"] == f"Bearer {front.admin_key}"
        assert headers[FORWARDED_BY.lower()] == "node-a"
        assert headers["host"] == front.base_url.removeprefix("http://")  # URLs it builds point here
        assert headers["x-trace"] == "t-1" and headers["content-type"] == "application/json"
        assert json.loads(body) == {"to": TO, "text": "é"}
    finally:
        peer.close()


def test_a_bad_key_is_refused_here_and_the_owner_never_asked(
    start_server: Callable[..., BackgroundServer],
) -> None:
    peer = RawPeer(None)
    locator = MapLocator("node-a")
    front = start_server(node_id="node-a", locator=locator)
    try:
        place(locator, "ses_x", peer)
        with api_client(front.base_url, "wat_not-a-key") as bad, api_client(front.base_url) as anonymous:
            for client in (bad, anonymous):
                answer = client.post("/v1/sessions/ses_x/start")
                assert answer.status_code == 401
                assert answer.json()["error"]["code"] == "UNAUTHORIZED"
                assert answer.headers["www-authenticate"] == "Bearer"
            basic = anonymous.delete("/v1/sessions/ses_x", headers={"Authorization": "Basic dTpw"})
            assert basic.status_code == 401
        assert peer.connections == 0
    finally:
        peer.close()


def test_reads_are_answered_here_even_when_another_node_runs_the_session(
    start_server: Callable[..., BackgroundServer],
) -> None:
    peer = RawPeer(None)  # would hang any call sent to it
    locator = MapLocator("node-a")
    front = start_server(node_id="node-a", locator=locator, route_timeout=5)
    try:
        with api_client(front.base_url, front.admin_key) as client:
            sid = client.post("/v1/sessions", json={"name": "here", "start": False}).json()["session_id"]
            place(locator, sid, peer)
            began = time.monotonic()
            assert client.get(f"/v1/sessions/{sid}").json()["id"] == sid
            assert client.get(f"/v1/sessions/{sid}/events").status_code == 200
            assert client.get(f"/v1/sessions/{sid}/messages").json()["total"] == 0
            assert client.get(f"/v1/sessions/{sid}/webhooks/deliveries").status_code == 200
            assert time.monotonic() - began < 2
        assert peer.connections == 0
    finally:
        peer.close()


def test_a_forwarded_call_is_never_forwarded_again(pair: Pair) -> None:
    front, owner = pair.front, pair.owner
    with api_client(owner.base_url, owner.admin_key) as direct, api_client(front.base_url, owner.admin_key) as via:
        sid = direct.post("/v1/sessions", json={"name": "loop", "start": False}).json()["session_id"]
        # Both nodes think the other runs it (a stale view). front → owner, and the owner
        # answers itself instead of sending it back (front would then say 404: not here).
        place(pair.front_locator, sid, owner)
        place(pair.owner_locator, sid, front, "node-a")
        started = via.post(f"/v1/sessions/{sid}/start")
        assert started.status_code == 200 and started.json()["id"] == sid
        # Called directly, the owner does forward (to front, which answers itself: 404).
        assert direct.post(f"/v1/sessions/{sid}/stop").json()["error"]["code"] == "SESSION_NOT_FOUND"

        # A call that already carries the mark, signed with the cluster's secret, is answered
        # by the node that receives it.
        path = f"/v1/sessions/{sid}/stop"
        marked = via.post(path, headers={
            FORWARDED_BY: "node-x", SIGNATURE: sign(pair.front_locator.secret, "node-x", "POST", path)})
        assert marked.status_code == 404 and marked.json()["error"]["code"] == "SESSION_NOT_FOUND"
        assert direct.get(f"/v1/sessions/{sid}").json()["status"] != "stopped"


def test_the_forwarded_mark_is_refused_unless_signed_with_the_cluster_secret(pair: Pair) -> None:
    """A caller with a key cannot make a node answer for a session another node runs by
    sending the mark itself: unsigned, signed with another secret, for another call or too
    old, the call is refused (403) and nothing happens."""
    front, owner = pair.front, pair.owner
    with api_client(owner.base_url, owner.admin_key) as direct, api_client(front.base_url, owner.admin_key) as via:
        sid = direct.post("/v1/sessions", json={"name": "forged", "start": False}).json()["session_id"]
        place(pair.front_locator, sid, owner)
        path = f"/v1/sessions/{sid}/start"
        secret = pair.front_locator.secret
        for signature in (None, sign("another-clusters-secret-xyz", "node-x", "POST", path),
                          sign(secret, "node-x", "POST", f"/v1/sessions/{sid}/stop"),
                          sign(secret, "node-y", "POST", path),
                          sign(secret, "node-x", "POST", path, now=time.time() - 3600), "t=1,v1=00"):
            headers = {FORWARDED_BY: "node-x"} | ({SIGNATURE: signature} if signature else {})
            r = via.post(path, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN", (signature, r.text)
        assert direct.get(f"/v1/sessions/{sid}").json()["status"] == "stopped"
        # Without the mark the same call is routed to the owner and carried out there.
        assert via.post(path).status_code == 200


def test_an_owner_that_refuses_the_connection_gives_503(
    start_server: Callable[..., BackgroundServer],
) -> None:
    locator = MapLocator("node-a")
    front = start_server(node_id="node-a", locator=locator, route_timeout=5)
    locator.placement["ses_gone"] = Holder("node-c", f"http://127.0.0.1:{free_port()}")
    with api_client(front.base_url, front.admin_key) as client:
        began = time.monotonic()
        answer = client.post("/v1/sessions/ses_gone/restart")
        assert time.monotonic() - began < 2
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.json()["error"]["code"] == "NODE_UNAVAILABLE"
    assert answer.json()["error"]["details"] == {"session_id": "ses_gone", "node_id": "node-c"}
    assert set(answer.json()) == {"error"} and set(answer.json()["error"]) == {"code", "message", "details"}


def test_an_owner_that_never_answers_gives_503_after_the_route_timeout(
    start_server: Callable[..., BackgroundServer],
) -> None:
    peer = RawPeer(None)
    locator = MapLocator("node-a")
    front = start_server(node_id="node-a", locator=locator, route_timeout=0.5)
    try:
        place(locator, "ses_hung", peer, "node-c")
        with api_client(front.base_url, front.admin_key) as client:
            began = time.monotonic()
            answer = client.get("/v1/sessions/ses_hung/qr")
            took = time.monotonic() - began
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "NODE_UNAVAILABLE"
        assert answer.headers["retry-after"] == "2"
        assert 0.45 <= took < 1.5
        assert peer.connections == 1 and len(peer.requests) == 1
    finally:
        peer.close()


def test_cluster_view_lists_the_nodes_for_admins_only(start_server: Callable[..., BackgroundServer]) -> None:
    started, beat = utcnow(), utcnow()
    locator = MapLocator("node-a", lease_ttl=9.0, known_nodes=[
        NodeInfo("node-a", "http://10.0.0.1:8080", started, beat, 3, 1000, "i-1"),
        NodeInfo("node-b", "http://10.0.0.2:8080", started, beat, 0, 500),
    ])
    front = start_server(node_id="node-a", locator=locator)
    user = front.create_key("acme")
    with api_client(front.base_url, front.admin_key) as admin:
        answer = admin.get("/v1/cluster")
    assert answer.status_code == 200
    body = answer.json()
    assert body["lease_ttl"] == 9.0
    assert [n["node_id"] for n in body["nodes"]] == ["node-a", "node-b"]
    assert set(body["nodes"][0]) == {"node_id", "url", "started_at", "heartbeat_at", "sessions", "capacity", "instance"}
    assert body["nodes"][0]["instance"] == "i-1" and body["nodes"][1]["instance"] is None
    assert body["nodes"][0]["sessions"] == 3 and body["nodes"][1]["capacity"] == 500
    assert body["nodes"][1]["url"] == "http://10.0.0.2:8080"
    assert body["nodes"][0]["heartbeat_at"].startswith(beat.strftime("%Y-%m-%dT%H:%M:%S"))
    with api_client(front.base_url, user) as client:
        forbidden = client.get("/v1/cluster")
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "FORBIDDEN"
    with api_client(front.base_url) as anonymous:
        assert anonymous.get("/v1/cluster").status_code == 401


def test_cluster_view_is_not_found_on_a_server_that_runs_alone(server: BackgroundServer, client: httpx.Client) -> None:
    answer = client.get("/v1/cluster")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"
    with api_client(server.base_url, server.create_key("acme")) as user:
        assert user.get("/v1/cluster").status_code == 403
    assert client.get("/v1/sessions").status_code == 200


class BrokenLocator(MapLocator):
    """A locator whose database is away."""

    async def locate(self, session_id: str) -> Holder | None:
        raise StoreUnavailable("The cluster database is unreachable")


def test_a_locator_that_cannot_answer_gives_the_usual_envelope(start_server: Callable[..., BackgroundServer]) -> None:
    front = start_server(node_id="node-a", locator=BrokenLocator("node-a"))
    with api_client(front.base_url, front.admin_key) as client:
        answer = client.post("/v1/sessions/ses_x/start")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert answer.json()["error"]["code"] == "STORE_UNAVAILABLE"
        assert client.get("/v1/sessions").status_code == 200  # reads never ask it
