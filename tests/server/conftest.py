"""Fixtures for the HTTP + SSE server: real uvicorn servers on loopback ports.

``server`` runs in a background thread (fast to start, reachable with ``server.call`` for
setup); ``spawn_server`` runs ``python -m watui serve`` as a subprocess, for the tests that
kill or signal the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServerProcess
from server_helpers import (
    api_client,
    fast_engine,
    keep_webhooks_offline,
    make_settings,
)

from watui.cluster.types import Locator
from watui.server import BackgroundServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., BackgroundServer]]:
    """Start servers with custom settings; all are stopped at the end of the test."""
    started: list[BackgroundServer] = []

    def start(data_dir: Path | None = None, engine_factory: Callable[[], Any] | None = fast_engine,
              send_timeout: float = 30.0, locator: Locator | None = None, **overrides: Any) -> BackgroundServer:
        settings = make_settings(data_dir or tmp_path / f"data{len(started)}", **overrides)
        server = BackgroundServer(settings, engine_factory=engine_factory, send_timeout=send_timeout,
                                  locator=locator)
        server.start()
        keep_webhooks_offline(server)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., BackgroundServer]) -> BackgroundServer:
    return start_server()


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with api_client(server.base_url, server.admin_key) as c:
        yield c


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    procs: list[ServerProcess] = []

    def spawn(data_dir: Path | None = None, args: list[str] | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / "data", env, args or []).start()
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.kill()
