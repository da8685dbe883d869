"""Bad input gets a 4xx with the error envelope: never a 500, never a trace, and the server
and its sessions are untouched afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from watui.server import BackgroundServer

JSON = {"Content-Type": "application/json"}
SID = "{sid}"


def chunks(total: int) -> Iterator[bytes]:
    """A body without Content-Length (chunked), bigger than the cap."""
    yield b'{"name": "'
    for _ in range(total // 1024):
        yield b"x" * 1024
    yield b'"}'


CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # Bodies.
    ("POST", "/v1/sessions", {"content": b"{bad", "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"content": b"", "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"content": b"\xff\xfe\x00", "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"content": b"[" * 30000 + b"]" * 30000, "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"content": b'{"name": NaN}', "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": []}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": 5}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": ""}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "\x00\x07"}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "colour": "red"}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "start": "yes please"}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "settings": {"webhook_secret": "nope"}}}, 422,
     "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "settings": {"max_reconnect_attempts": -1}}}, 422,
     "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"content": b'{"name": "x", "settings": {"max_reconnect_attempts": 1e400}}',
                              "headers": JSON}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "settings": {"webhook_url": "not a url"}}}, 422,
     "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "link_method": "phone", "phone_number": "12"}}, 422,
     "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x", "link_method": "phone"}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"data": {"name": "x"}}, 422, "VALIDATION_ERROR"),
    ("POST", "/v1/sessions", {"json": {"name": "x" * 70_000}}, 413, "PAYLOAD_TOO_LARGE"),
    ("POST", "/v1/sessions", {"content": chunks(70_000), "headers": JSON}, 413, "PAYLOAD_TOO_LARGE"),
    ("PATCH", f"/v1/sessions/{SID}", {"json": {"settings": {"colour": "red"}}}, 422, "VALIDATION_ERROR"),
    ("PATCH", f"/v1/sessions/{SID}", {"json": {"name": None, "owner": "mallory"}}, 422, "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/pair-code", {"json": {"phone_number": "call me"}}, 422, "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/pair-code", {"json": {"phone_number": "+0123456789"}}, 422,
     "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/pair-code", {"json": {}}, 422, "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/messages", {"json": {"to": "", "text": "hi"}}, 422, "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/messages", {"json": {"to": "+14155550123", "text": "   "}}, 422,
     "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/messages", {"json": {"to": "+14155550123", "text": "x" * 5000}}, 422,
     "VALIDATION_ERROR"),
    ("POST", f"/v1/sessions/{SID}/simulate", {"json": {"action": "dance"}}, 422, "VALIDATION_ERROR"),
    # Paging, filters, ids.
    ("GET", "/v1/sessions?limit=0", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?limit=101", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?limit=ten", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?offset=-1", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?offset=99999999999999999999999", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?status=sleeping", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions?sort=owner", {}, 422, "VALIDATION_ERROR"),
    ("GET", f"/v1/sessions/{SID}/messages?limit=-5", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions/has%20space", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions/" + "a" * 65, {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/sessions/ses_%00", {}, 422, "VALIDATION_ERROR"),
    ("DELETE", "/v1/sessions/..%2F..%2Fetc", {}, 404, "NOT_FOUND"),
    ("GET", "/v1/sessions/ses_doesnotexist", {}, 404, "SESSION_NOT_FOUND"),
    # Resume points.
    ("GET", "/v1/events", {"headers": {"Last-Event-ID": "abc"}}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/events", {"headers": {"Last-Event-ID": "-1"}}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/events", {"headers": {"Last-Event-ID": "1e3"}}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/events", {"headers": {"Last-Event-ID": "9" * 30}}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/events?last_event_id=%C3%A9", {}, 422, "VALIDATION_ERROR"),
    ("GET", "/v1/events", {"headers": {"Last-Event-ID": "999999"}}, 422, "VALIDATION_ERROR"),
    ("GET", f"/v1/sessions/{SID}/stream?last_event_id=999999", {}, 422, "VALIDATION_ERROR"),
    ("GET", f"/v1/sessions/{SID}/stream", {"headers": {"Last-Event-ID": "１２".encode()}}, 422, "VALIDATION_ERROR"),
    # Routes and methods.
    ("GET", "/v1/nothing-here", {}, 404, "NOT_FOUND"),
    ("PUT", "/v1/sessions", {"json": {"name": "x"}}, 405, "METHOD_NOT_ALLOWED"),
]


@pytest.fixture
def victim(client: httpx.Client) -> dict[str, Any]:
    """A session that bad requests aim at; it must come out unchanged."""
    created = client.post("/v1/sessions", json={"name": "victim", "start": False})
    assert created.status_code == 201
    session: dict[str, Any] = created.json()["session"]
    return session


def test_every_bad_request_is_a_4xx_envelope(
    server: BackgroundServer, client: httpx.Client, victim: dict[str, Any]
) -> None:
    for method, path, kwargs, status, code in CASES:
        response = client.request(method, path.replace(SID, victim["id"]), **kwargs)
        label = f"{method} {path[:60]} -> {response.status_code} {response.text[:200]}"
        assert response.status_code == status, label
        body = response.json()
        assert set(body) == {"error"}, label
        assert body["error"]["code"] == code, label
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], label
        assert isinstance(body["error"]["details"], dict), label
        assert "Traceback" not in response.text and 'File "' not in response.text, label
        assert len(response.content) < 8_000, f"no echo of huge input: {label}"

    # The server and the session are untouched.
    assert client.get("/v1/health").status_code == 200
    after = client.get(f"/v1/sessions/{victim['id']}").json()
    assert after == victim
    assert client.get("/v1/sessions").json()["total"] == 1


def test_validation_details_name_the_field(client: httpx.Client) -> None:
    response = client.post("/v1/sessions", json={"name": "x", "settings": {"max_reconnect_attempts": "many"}})
    errors = response.json()["error"]["details"]["errors"]
    assert errors[0]["loc"] == ["body", "settings", "max_reconnect_attempts"]
    assert "input" not in errors[0]
    malformed = client.post("/v1/sessions", content=b'{"name": ', headers=JSON)
    assert malformed.json()["error"]["message"] == "The body is not valid JSON"


def test_a_nul_character_in_caller_text_is_a_422_that_says_so(
    client: httpx.Client, victim: dict[str, Any]
) -> None:
    """U+0000 in anything a caller sends is refused with a message naming the field (PostgreSQL
    ``text`` cannot hold it, and it is never meaningful); nothing is changed."""
    sid = victim["id"]
    for method, path, body, field in [
        ("POST", "/v1/sessions", {"name": "bad", "description": "a\x00b"}, "description"),
        ("PATCH", f"/v1/sessions/{sid}", {"description": "a\x00b"}, "description"),
        ("PATCH", f"/v1/sessions/{sid}", {"settings": {"webhook_secret": "whsec_\x00"}}, "webhook_secret"),
        ("POST", f"/v1/sessions/{sid}/messages", {"to": "+14155550123", "text": "hi\x00there"}, "text"),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert field in error["message"] and "NUL" in response.text, error
    assert client.get(f"/v1/sessions/{sid}").json() == victim
    assert client.get("/v1/sessions").json()["total"] == 1


def test_garbage_on_the_socket_does_not_hurt(server: BackgroundServer, client: httpx.Client) -> None:
    port = int(server.base_url.rsplit(":", 1)[1])
    for raw in (b"GARBAGE\r\n\r\n", b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 4"), reply[:80]
    assert client.get("/v1/health").status_code == 200
