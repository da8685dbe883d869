"""Helpers for the server tests: settings, clients, SSE reading, a server subprocess."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from watui.config import Settings
from watui.engines.simulated import SimulatedEngine


def fast_engine() -> SimulatedEngine:
    """The simulated phone, quick: a scan links in tens of milliseconds."""
    return SimulatedEngine(connect_latency=0.01, link_latency=0.02, seed="tests")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("tests never reach the network", request=request)


OFFLINE = httpx.MockTransport(_refuse)
"""Webhook receivers in tests: schemathesis invents webhook URLs, which must go nowhere."""


def keep_webhooks_offline(server: Any) -> None:
    """Point the server's webhook dispatcher at :data:`OFFLINE` (before any delivery)."""
    dispatcher = server.manager.webhooks
    if dispatcher is not None:
        dispatcher._transport = OFFLINE


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "engine": "simulated",
        "sse_ping_interval": 0.2,
        "sqlite_synchronous": "NORMAL",
        # Webhook URLs in these tests point at loopback (and go nowhere: OFFLINE); the SSRF
        # tests turn the guard back on.
        "webhook_allow_private": True,
        **overrides,
    }
    return Settings(**values)


def api_client(base_url: str, key: str | None = None, **kwargs: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=15, **kwargs)


def decode(event: ServerSentEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.data)
    return data


def read_until(
    client: httpx.Client,
    url: str,
    stop: Callable[[ServerSentEvent], bool],
    *,
    headers: dict[str, str] | None = None,
    on_event: Callable[[ServerSentEvent], None] | None = None,
) -> list[ServerSentEvent]:
    """Read a stream until ``stop(event)`` or until the server closes it."""
    events: list[ServerSentEvent] = []
    with connect_sse(client, "GET", url, headers=dict(headers or {})) as source:
        for event in source.iter_sse():
            if not event.data:
                # httpx-sse turns a `: ping` after an event into an empty event (browsers don't).
                continue
            events.append(event)
            if on_event is not None:
                on_event(event)
            if stop(event):
                break
    return events


def linked_session(client: httpx.Client, name: str, **settings: Any) -> str:
    """Create a session with ``settings`` and play its phone scanning the code: connected."""
    created = client.post("/v1/sessions", json={"name": name, "settings": settings})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "qr")
    client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
    read_until(client, f"/v1/sessions/{session_id}/stream", lambda e: e.event == "connected")
    return session_id


@contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a loopback port answering with ``handler``; its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
