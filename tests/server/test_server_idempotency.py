"""Sends with an ``Idempotency-Key`` over HTTP, through a real uvicorn: a retry answers the
message the first send made and sends nothing; a failed send gives its key back; concurrent
retries send once; bad keys are refused; keys are the caller's own session's."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from server_helpers import api_client, read_until

from watui.engines.simulated import SimulatedEngine
from watui.server import BackgroundServer

TO = "+14155550100"


def quick() -> SimulatedEngine:
    return SimulatedEngine(connect_latency=0.01, link_latency=0.02, seed="idempotency")


def linked(client: httpx.Client, name: str) -> str:
    session_id = str(client.post("/v1/sessions", json={"name": name}).json()["session_id"])
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "connected")
    return session_id


def sent(client: httpx.Client, session_id: str) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    return [m for m in messages if m["direction"] == "out"]


def test_a_retry_with_the_same_key_answers_the_first_send_and_sends_nothing(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(engine_factory=quick)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked(client, "shop")
        path = f"/v1/sessions/{session_id}/messages"
        first = client.post(path, json={"to": TO, "text": "order 17 shipped"}, headers={"Idempotency-Key": "o-17"})
        assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
        again = client.post(path, json={"to": TO, "text": "order 17 shipped"}, headers={"Idempotency-Key": "o-17"})
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        other = client.post(path, json={"to": TO, "text": "order 18 shipped"}, headers={"Idempotency-Key": "o-18"})
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
        plain = client.post(path, json={"to": TO, "text": "no key: sent each time"})
        assert plain.status_code == 201
        assert [m["text"] for m in sent(client, session_id)].count("order 17 shipped") == 1

        with ThreadPoolExecutor(8) as pool:  # eight retries at once: one send
            answers = list(pool.map(lambda _: client.post(
                path, json={"to": TO, "text": "at once"}, headers={"Idempotency-Key": "burst"}), range(8)))
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        assert [m["text"] for m in sent(client, session_id)].count("at once") == 1

        for bad in ("has space", "", "x" * 256, "na\xefve".encode("latin-1")):
            r = client.post(path, json={"to": TO, "text": "bad key"}, headers={"Idempotency-Key": bad})
            assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", (bad, r.text)
        assert [m["text"] for m in sent(client, session_id)].count("bad key") == 0


def test_a_send_that_failed_gives_its_key_back_and_keys_are_per_session(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(engine_factory=quick)
    with api_client(server.base_url, server.admin_key) as client:
        waiting = str(client.post("/v1/sessions", json={"name": "later", "start": False}).json()["session_id"])
        path = f"/v1/sessions/{waiting}/messages"
        refused = client.post(path, json={"to": TO, "text": "hello"}, headers={"Idempotency-Key": "k"})
        assert refused.status_code == 409, refused.text  # not connected: nothing sent
        client.post(f"/v1/sessions/{waiting}/start")
        read_until(client, f"/v1/sessions/{waiting}/stream", lambda e: e.event == "qr")
        client.post(f"/v1/sessions/{waiting}/simulate", json={"action": "scan"})
        read_until(client, f"/v1/sessions/{waiting}/stream", lambda e: e.event == "connected")
        retried = client.post(path, json={"to": TO, "text": "hello"}, headers={"Idempotency-Key": "k"})
        assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
        # The same key on another session is another send.
        other = linked(client, "other")
        elsewhere = client.post(f"/v1/sessions/{other}/messages", json={"to": TO, "text": "hello"},
                                headers={"Idempotency-Key": "k"})
        assert elsewhere.status_code == 201 and "Idempotent-Replayed" not in elsewhere.headers
        # A key on a session the caller cannot see is a 404 like any other call.
        _, secret = server.call(lambda: server.manager.store.create_api_key("mallory"))  # type: ignore[union-attr]
        with api_client(server.base_url, secret) as stranger:
            r = stranger.post(path, json={"to": TO, "text": "hello"}, headers={"Idempotency-Key": "k"})
            assert r.status_code == 404, r.text
