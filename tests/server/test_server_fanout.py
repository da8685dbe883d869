"""Many SSE clients at once, and a client that stops reading: everyone gets every event, and
the stalled one costs a bounded amount of memory until it is dropped, connection and all."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import httpx
from httpx_sse import aconnect_sse
from server_helpers import api_client, read_until
from test_server_resume import link

from watui.bus import BusSubscription
from watui.manager import SessionManager
from watui.server import BackgroundServer

CLIENTS = 100
MAX_MESSAGES = 5000
"""4 KB each: far more than any kernel buffers on loopback hold for one connection."""


async def _listen(client: httpx.AsyncClient, connected: asyncio.Event, ready: list[int]) -> list[int]:
    """Collect event ids until the first ``deleted`` event, which ends the run."""
    ids: list[int] = []
    async with aconnect_sse(client, "GET", "/v1/events") as source:
        ready.append(1)
        if len(ready) == CLIENTS:
            connected.set()
        async for event in source.aiter_sse():
            if not event.data:
                continue
            ids.append(int(event.id))
            if event.event == "deleted":
                return ids
    return ids


async def _fan_out(base_url: str, key: str) -> tuple[list[list[int]], list[int]]:
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=CLIENTS + 10)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:
        connected = asyncio.Event()
        ready: list[int] = []
        listeners = [asyncio.create_task(_listen(client, connected, ready)) for _ in range(CLIENTS)]
        await asyncio.wait_for(connected.wait(), 30)
        created: list[int] = []
        for n in range(10):
            sid = (await client.post("/v1/sessions", json={"name": f"s{n}", "start": n < 3})).json()["session_id"]
            if n < 3:
                await client.post(f"/v1/sessions/{sid}/stop")
            created.append(n)
        last = (await client.post("/v1/sessions", json={"name": "last", "start": False})).json()["session_id"]
        await client.delete(f"/v1/sessions/{last}")
        results = await asyncio.wait_for(asyncio.gather(*listeners), 60)
        return results, created


def test_100_concurrent_clients_all_get_every_event(server: BackgroundServer) -> None:
    results, _ = asyncio.run(_fan_out(server.base_url, server.admin_key))
    assert len(results) == CLIENTS
    reference = results[0]
    assert len(reference) >= 11 + 3 * 2 + 1, "creates, starts, stops, the delete"
    with api_client(server.base_url, server.admin_key) as client:
        logged = read_until(client, "/v1/events?last_event_id=0", lambda e: e.event == "deleted")
    assert reference == [int(e.id) for e in logged], "exactly what the log holds"
    for ids in results:
        assert ids == reference, "every client saw exactly the same events"


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_stalled_client_is_bounded_then_dropped(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(subscriber_queue_size=8, send_timeout=1.0)
    manager = server.manager
    assert manager is not None
    port = int(server.base_url.rsplit(":", 1)[1])

    with api_client(server.base_url, server.admin_key) as client:
        session_id = link(client, "chatty")
        # A client that connects and never reads a byte, with a tiny receive window.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.admin_key}"
                        "\r\n\r\n".encode())
        _wait_for(lambda: manager.bus.subscriber_count == 1)
        stalled_sub = server.call(lambda: _only_subscriber(manager))

        # A healthy client reads everything meanwhile, until the `deleted` marker.
        fast_ids: list[int] = []

        def read_all() -> None:
            with api_client(server.base_url, server.admin_key) as fast:
                events = read_until(fast, "/v1/events", lambda e: e.event == "deleted")
            fast_ids.extend(int(e.id) for e in events)

        reader = threading.Thread(target=read_all)
        reader.start()
        _wait_for(lambda: manager.bus.subscriber_count == 2)

        # Send 4 KB messages until the stalled client's buffers are full and it falls behind
        # (how much that takes depends on the kernel), watching what it holds in memory.
        big = "x" * 4000
        sent = 0
        worst = 0
        started = time.monotonic()
        while sent < MAX_MESSAGES:
            for _ in range(50):
                response = client.post(f"/v1/sessions/{session_id}/simulate",
                                       json={"action": "message", "text": big})
                assert response.status_code == 200
            sent += 50
            pending = server.call(lambda: _max_pending(manager))
            worst = max(worst, pending)
            if stalled_sub.lagging or stalled_sub.resyncs:
                break
        assert sent < MAX_MESSAGES, "the stalled client never fell behind"
        assert worst <= 8 + 500, "memory held for it stays within its queue (plus one replay page)"

        marker = client.post("/v1/sessions", json={"name": "marker", "start": False}).json()["session_id"]
        client.delete(f"/v1/sessions/{marker}")
        reader.join(30)
        elapsed = time.monotonic() - started
        assert not reader.is_alive()
        assert len(fast_ids) >= sent and fast_ids == list(range(fast_ids[0], fast_ids[0] + len(fast_ids))), \
            "the reading client got everything, in order"
        assert elapsed < 30, "and was not held up by the stalled one"
        # The stalled client is dropped once a send has been stuck for send_timeout.
        _wait_for(lambda: manager.bus.subscriber_count == 0)
        # ... and its connection is aborted, though it never closed its end: the server's file
        # descriptor is free (a graceful close would wait for it to read for ever).
        assert server.server is not None
        uvicorn_state = server.server.server_state
        mine = stalled.getsockname()
        _wait_for(lambda: mine not in {p.client for p in list(uvicorn_state.connections)}, timeout=5)
        stalled.close()
        assert client.get("/v1/health").status_code == 200


async def _only_subscriber(manager: SessionManager) -> BusSubscription:
    (subscriber,) = manager.bus._subscribers
    return subscriber


async def _max_pending(manager: SessionManager) -> int:
    """The most events any subscriber holds in memory right now."""
    return max((sub.pending for sub in manager.bus._subscribers), default=0)
