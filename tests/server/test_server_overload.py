"""Overload (issue 19): at capacity, or while the event loop falls behind, creates that start,
starts and restarts answer ``503 OVERLOADED`` with ``Retry-After``; stops, deletes and reads
never do, and what was accepted runs to the end (it links).

Over real HTTP against a real server. The lag check reads an injected lag source, so no test
depends on how busy the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from server_helpers import api_client, decode, read_until

from watui.config import NODE_CAPACITY, Settings
from watui.errors import Overloaded
from watui.manager.admission import CAPACITY_RETRY_AFTER, LAG_RETRY_AFTER
from watui.remote.errors import error_from_body
from watui.server import BackgroundServer
from watui.server.metrics import LAG_WINDOW, LagWindow


class FixedLag:
    """A lag source that says what the test sets."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def lag_p99(self) -> float | None:
        return self.seconds


def assert_overloaded(answer: httpx.Response, reason: str, retry_after: int) -> dict[str, Any]:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == str(retry_after)
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "OVERLOADED"
    assert error["details"]["reason"] == reason
    assert f"try again in {retry_after} s" in error["message"].lower()
    details: dict[str, Any] = error["details"]
    return details


def create(client: httpx.Client, name: str, *, start: bool = True) -> httpx.Response:
    return client.post("/v1/sessions", json={"name": name, "start": start})


def link(client: httpx.Client, session_id: str) -> list[ServerSentEvent]:
    """Follow the session's stream and scan its first QR code; the stream ends by itself at
    ``connected`` (or at an ``error`` event, which is then the last one)."""
    scanned: list[str] = []

    def scan(event: ServerSentEvent) -> None:
        if event.event == "qr" and not scanned:
            scanned.append(decode(event)["qr_text"])
            assert client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"}).status_code == 200

    return read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: False, on_event=scan)


def statuses(client: httpx.Client) -> dict[str, str]:
    page = client.get("/v1/sessions", params={"limit": 100}).json()
    return {s["name"]: s["status"] for s in page["sessions"]}


# ---------------------------------------------------------------- capacity


def test_past_capacity_creates_and_starts_answer_503_and_stopping_makes_room(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(node_capacity=2)
    with api_client(server.base_url, server.admin_key) as client:
        a, b = (create(client, name).json()["session_id"] for name in ("a", "b"))
        details = assert_overloaded(create(client, "c"), "capacity", CAPACITY_RETRY_AFTER)
        assert details == {"reason": "capacity", "capacity": 2, "running": 2, "retry_after": CAPACITY_RETRY_AFTER}
        assert "c" not in statuses(client), "a refused create leaves nothing behind"

        # A session that does not start costs nothing: accepted, and its start refused.
        idle = create(client, "idle", start=False)
        assert idle.status_code == 201
        idle_id = idle.json()["session_id"]
        assert_overloaded(client.post(f"/v1/sessions/{idle_id}/start"), "capacity", CAPACITY_RETRY_AFTER)
        assert_overloaded(client.post(f"/v1/sessions/{idle_id}/restart"), "capacity", CAPACITY_RETRY_AFTER)
        assert_overloaded(client.post(f"/v1/sessions/{idle_id}/pair-code", json={"phone_number": "+14155550123"}),
                          "capacity", CAPACITY_RETRY_AFTER)
        assert statuses(client)["idle"] == "stopped"

        # Restarting a running session adds none: never refused for capacity.
        assert client.post(f"/v1/sessions/{a}/restart").status_code == 200
        # Reads, and what frees a slot, are never refused.
        assert client.get(f"/v1/sessions/{a}").status_code == 200
        assert client.get("/v1/sessions").status_code == 200
        assert client.patch(f"/v1/sessions/{idle_id}", json={"description": "waits"}).status_code == 200
        assert client.post(f"/v1/sessions/{b}/stop").status_code == 200

        # One slot free: the stopped session starts, and the node is full again.
        assert client.post(f"/v1/sessions/{idle_id}/start").status_code == 200
        assert_overloaded(client.post(f"/v1/sessions/{b}/start"), "capacity", CAPACITY_RETRY_AFTER)
        assert client.delete(f"/v1/sessions/{idle_id}").status_code == 204
        assert client.post(f"/v1/sessions/{b}/start").status_code == 200

        # Everything accepted links.
        for session_id in (a, b):
            assert link(client, session_id)[-1].event == "connected"
        assert statuses(client) == {"a": "connected", "b": "connected"}

        # Refusals are counted where an operator looks.
        metrics = client.get("/metrics").text
        assert 'watui_overload_refusals_total{reason="capacity"} 5.0' in metrics
        assert "watui_node_capacity 2.0" in metrics and "watui_sessions_running 2.0" in metrics


async def _start_all(base_url: str, key: str, ids: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=15) as client:
        return list(await asyncio.gather(*(client.post(f"/v1/sessions/{i}/start") for i in ids)))


def test_concurrent_starts_fill_the_node_exactly_and_every_accepted_session_links(
    start_server: Callable[..., BackgroundServer],
) -> None:
    """A burst of starts, as a bulk action sends them: each is answered for itself, exactly
    the capacity is accepted, and none of those fails later."""
    server = start_server(node_capacity=3)
    with api_client(server.base_url, server.admin_key) as client:
        ids = [create(client, f"s{n}", start=False).json()["session_id"] for n in range(8)]
        answers = asyncio.run(_start_all(server.base_url, server.admin_key, ids))
        accepted = [i for i, answer in zip(ids, answers, strict=True) if answer.status_code == 200]
        refused = [answer for answer in answers if answer.status_code != 200]
        assert len(accepted) == 3 and len(refused) == 5
        for answer in refused:
            assert_overloaded(answer, "capacity", CAPACITY_RETRY_AFTER)
        for session_id in accepted:
            events = link(client, session_id)
            assert events[-1].event == "connected", [e.event for e in events]
        final = {s["id"]: s["status"] for s in client.get("/v1/sessions", params={"limit": 100}).json()["sessions"]}
        assert sorted(final.values()) == ["connected"] * 3 + ["stopped"] * 5
        assert {i for i, status in final.items() if status == "connected"} == set(accepted)


def test_a_create_without_start_is_never_refused_and_the_owners_limit_is_said_first(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(node_capacity=1, max_active_sessions_per_owner=1)
    bob = server.create_key("bob")
    with api_client(server.base_url, bob) as client, api_client(server.base_url, server.admin_key) as admin:
        assert create(client, "first").status_code == 201
        # Bob is at his own limit as well as the node at its capacity: his limit is what he
        # can do something about, and retrying will not lift it.
        second = create(client, "second")
        assert second.status_code == 409 and second.json()["error"]["code"] == "SESSION_LIMIT_REACHED"
        assert create(client, "kept", start=False).status_code == 201
        assert_overloaded(create(admin, "admins-too"), "capacity", CAPACITY_RETRY_AFTER)
    assert server.manager is not None and server.manager.admission.running() == 1


def test_start_up_restore_is_not_refused_even_past_a_lowered_capacity(
    start_server: Callable[..., BackgroundServer], tmp_path: Any,
) -> None:
    """What the node accepted before a restart was accepted: it comes back, and only new
    starts are refused until the node is under its (now lower) capacity."""
    data_dir = tmp_path / "restarted"
    first = start_server(data_dir=data_dir, node_capacity=2)
    with api_client(first.base_url, first.admin_key) as client:
        ids = [create(client, name).json()["session_id"] for name in ("a", "b")]
    first.stop()
    second = start_server(data_dir=data_dir, node_capacity=1)
    with api_client(second.base_url, second.admin_key) as client:
        for session_id in ids:  # each stream shows its QR code once the restore started it
            read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
        details = assert_overloaded(create(client, "c"), "capacity", CAPACITY_RETRY_AFTER)
        assert (details["capacity"], details["running"]) == (1, 2)
        assert client.post(f"/v1/sessions/{ids[0]}/stop").status_code == 200
        assert_overloaded(client.post(f"/v1/sessions/{ids[0]}/start"), "capacity", CAPACITY_RETRY_AFTER)
        assert client.post(f"/v1/sessions/{ids[1]}/stop").status_code == 200
        assert client.post(f"/v1/sessions/{ids[0]}/start").status_code == 200


# ---------------------------------------------------------------- loop lag


def test_while_the_loop_lags_creates_and_starts_are_refused_and_stops_are_not(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(overload_lag_ms=200)
    assert server.manager is not None
    admission = server.manager.admission
    lag = FixedLag(None)
    admission.lag = lag  # instead of the server's probe
    with api_client(server.base_url, server.admin_key) as client:
        running = create(client, "running").json()["session_id"]
        lag.seconds = 0.25
        details = assert_overloaded(create(client, "late"), "loop_lag", LAG_RETRY_AFTER)
        assert details == {"reason": "loop_lag", "capacity": NODE_CAPACITY["simulated"], "running": 1,
                           "lag_p99_ms": 250, "lag_limit_ms": 200, "retry_after": LAG_RETRY_AFTER}
        assert "falling behind" in create(client, "late").json()["error"]["message"]
        # A refused restart stops nothing.
        assert_overloaded(client.post(f"/v1/sessions/{running}/restart"), "loop_lag", LAG_RETRY_AFTER)
        assert statuses(client)["running"] in ("initializing", "qr_ready")
        idle = create(client, "idle", start=False)
        assert idle.status_code == 201
        idle_id = idle.json()["session_id"]
        assert_overloaded(client.post(f"/v1/sessions/{idle_id}/start"), "loop_lag", LAG_RETRY_AFTER)
        assert client.post(f"/v1/sessions/{running}/stop").status_code == 200
        assert client.delete(f"/v1/sessions/{running}").status_code == 204

        lag.seconds = 0.2  # at the limit, not above it
        assert client.post(f"/v1/sessions/{idle_id}/start").status_code == 200
        assert link(client, idle_id)[-1].event == "connected"
        assert 'watui_overload_refusals_total{reason="loop_lag"} 4.0' in client.get("/metrics").text


def test_the_lag_check_is_off_at_zero_and_the_server_probe_feeds_it(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(overload_lag_ms=0)
    assert server.manager is not None
    admission = server.manager.admission
    assert isinstance(admission.lag, LagWindow), "the server's probe is wired in"
    admission.lag = FixedLag(60.0)
    with api_client(server.base_url, server.admin_key) as client:
        assert create(client, "anyway").status_code == 201


def test_the_lag_window_is_a_p99_of_the_last_100_probes() -> None:
    window = LagWindow()
    for _ in range(LAG_WINDOW - 1):
        window.add(0.001)
    assert window.lag_p99() is None, "no verdict before the window is full"
    window.add(0.9)  # one stall (a garbage collection): the p99 of 100 looks past it
    assert window.lag_p99() == 0.001
    window.add(0.7)  # a second one within the window: now it counts
    assert window.lag_p99() == 0.7
    for _ in range(LAG_WINDOW - 2):
        window.add(0.002)
    assert window.lag_p99() == 0.7, "both stalls are still in the last 100"
    window.add(0.002)
    assert window.lag_p99() == 0.002, "the first stall left the window"


# ---------------------------------------------------------------- the contract around it


def test_openapi_lists_overloaded_and_a_client_reads_it_back(server: BackgroundServer) -> None:
    with api_client(server.base_url) as client:
        document = client.get("/openapi.json").json()
    for path, method in (("/v1/sessions", "post"), ("/v1/sessions/{session_id}/start", "post")):
        assert "OVERLOADED" in document["paths"][path][method]["responses"]["503"]["description"]
    body = {"error": {"code": "OVERLOADED", "message": "The server is at capacity …",
                      "details": {"reason": "capacity", "capacity": 3, "running": 3, "retry_after": 30}}}
    error = error_from_body(503, body)
    assert isinstance(error, Overloaded)
    assert error.message == "The server is at capacity …" and error.headers() == {"Retry-After": "30"}
    # The connection cap's refusal carries no details: the class's own wait.
    bare = error_from_body(503, {"error": {"code": "OVERLOADED", "message": "full", "details": {}}})
    assert isinstance(bare, Overloaded) and bare.retry_after == Overloaded.default_retry_after


def test_the_default_capacity_depends_on_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATUI_OVERLOAD_LAG_MS", raising=False)  # tests/conftest.py sets it
    assert Settings(engine="simulated").node_capacity == NODE_CAPACITY["simulated"] == 100_000
    assert Settings(engine="neonize").node_capacity == NODE_CAPACITY["neonize"] == 1_000
    assert Settings(engine="simulated", node_capacity=7).node_capacity == 7
    assert Settings(engine="neonize", node_capacity=0).node_capacity == 0
    assert Settings(engine="simulated").overload_lag_ms == 250
    # From the environment, as `watui serve` reads it.
    monkeypatch.setenv("WATUI_ENGINE", "simulated")
    monkeypatch.setenv("WATUI_NODE_CAPACITY", "12")
    monkeypatch.setenv("WATUI_OVERLOAD_LAG_MS", "0")
    assert (Settings().node_capacity, Settings().overload_lag_ms) == (12, 0)
