"""Helpers for the server tests: settings, clients, SSE reading, a server subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from watui.config import Settings
from watui.engines.simulated import SimulatedEngine

REPO = Path(__file__).resolve().parents[2]
SERVING = re.compile(r"watui serving on (http://\S+)")


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


@dataclass
class ServerProcess:
    """``python -m watui serve`` in a subprocess, on a port the OS picked."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    base_url: str = ""
    output: list[str] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, "WATUI_SSE_PING_INTERVAL": "0.2", **self.env}
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watui", "serve", "--engine", "simulated", "--port", "0",
             "--data-dir", str(self.data_dir), *self.args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                match = SERVING.search(line)
                if match:
                    self.base_url = match.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


