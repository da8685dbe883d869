"""Helpers for the attach tests: real servers on loopback (a thread, or a ``watui serve``
subprocess that can be killed and restarted on the same port) and a console attached to one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve_process import ServerProcess
from textual.pilot import Pilot

from watui.app import WatuiApp
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.remote import Backoff, RemoteService
from watui.server import BackgroundServer


def fast_engine() -> SimulatedEngine:
    """The simulated phone, quick: a scan links in tens of milliseconds."""
    return SimulatedEngine(connect_latency=0.01, link_latency=0.02, seed="attach")


def background_server(data_dir: Path, **overrides: Any) -> BackgroundServer:
    settings = Settings(**{"data_dir": data_dir, "engine": "simulated", "sqlite_synchronous": "NORMAL",
                           "sse_ping_interval": 0.5, **overrides})
    return BackgroundServer(settings, engine_factory=fast_engine).start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_process(data_dir: Path, port: int, **env: str) -> ServerProcess:
    """``watui serve`` on a fixed port, so a restart is at the same address; ``kill()`` is
    SIGKILL (nothing is flushed or parked on purpose)."""
    defaults = {"WATUI_SSE_PING_INTERVAL": "0.5", "WATUI_SQLITE_SYNCHRONOUS": "NORMAL"}
    return ServerProcess(data_dir, port=port, env={**defaults, **env})


async def attach(url: str, key: str, *, backoff: Backoff | None = None) -> tuple[RemoteService, WatuiApp]:
    """A remote service and a console over it, as ``watui attach`` builds them."""
    service = await RemoteService.open(url, key, backoff=backoff or Backoff(first=0.05, cap=0.5))
    app = WatuiApp(service=service, link=service.link, cursor_blink=False, refresh_interval=0.01)
    app.animation_level = "none"
    return service, app


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Let the app run (real time: a real server is on the other side) until ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await pilot.pause(0.02)


class HeldBackoff(Backoff):
    """Reconnects wait until the test lets them (``release()``): what happens on the server
    meanwhile is what a console that is away would miss without a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def wait(self, attempt: int) -> None:
        await self.gate.wait()
        await super().wait(1)


def toasts(app: WatuiApp) -> list[tuple[str, str]]:
    """(title, message) of every toast shown so far."""
    return [(n.title, n.message) for n in app._notifications]
