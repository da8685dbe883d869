"""``watui web``: the console in a browser, served by textual-serve.

textual-serve starts one console process per browser tab and relays its terminal over a
websocket. Every tab runs ``watui attach`` against one server, so the tabs share the same
sessions: with ``--attach URL`` that server is elsewhere; without it, ``watui web`` runs the
server itself, on a loopback port, over its data dir (the engine lives in this process, and
the tabs come and go). The API key reaches the tabs through the environment, never on a
command line.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from watui.config import Settings
from watui.console.attach import AttachError, normalize_url, resolve_key
from watui.errors import WatuiError


def web_server(command: str, *, host: str, port: int, public_url: str | None) -> Any:
    """textual-serve's server, ending open tabs on shutdown.

    Without this, a tab's websocket handler runs until its browser goes away, and shutdown
    waits for it (aiohttp's 60 s grace): SIGTERM would seem to hang. Cancelling the handler
    makes textual-serve close the socket and tell the tab's console to quit.
    """
    from aiohttp import web
    from textual_serve.server import Server

    class WebConsole(Server):
        def __init__(self) -> None:
            super().__init__(command, host=host, port=port, title="watui", public_url=public_url)
            self.tabs: set[asyncio.Task[Any]] = set()

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            task = asyncio.current_task()
            assert task is not None
            self.tabs.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.tabs.discard(task)

        async def on_shutdown(self, app: web.Application) -> None:
            for task in list(self.tabs):
                task.cancel()

    return WebConsole()


def attach_command(url: str, data_dir: Path) -> str:
    """The shell command each browser tab runs (textual-serve runs a command line)."""
    return shlex.join([sys.executable, "-m", "watui", "attach", url, "--data-dir", str(data_dir)])


async def _check(url: str, key: str) -> None:
    from watui.remote import RemoteService

    try:
        service = await RemoteService.open(url, key)
    except WatuiError as exc:
        raise AttachError(f"Cannot attach to {url}: {exc.message}") from None
    await service.aclose()


def run_web(
    settings: Settings,
    *,
    host: str,
    port: int,
    attach: str | None,
    key: str | None,
    public_url: str | None = None,
) -> None:
    """Serve the console on ``http://host:port`` until SIGINT/SIGTERM."""
    embedded = None
    if not attach:
        from watui.stores.datadir import read_holder

        holder = read_holder(settings.data_dir)
        if holder is not None and holder.url:  # a server runs from this data dir: use it
            print(f"The data dir {settings.data_dir} is held by a watui server ({holder.describe()}): "
                  "the web console attaches to it.", flush=True)
            attach = holder.url
    if attach:
        url = normalize_url(attach)
        key = resolve_key(url, key, settings.data_dir)
        asyncio.run(_check(url, key))  # a wrong URL or key is said now, not in every tab
    else:
        from watui.server import BackgroundServer

        embedded = BackgroundServer(settings, log_level="warning").start(timeout=120)  # takes the lock
        url, key = embedded.base_url, embedded.admin_key
    os.environ["WATUI_API_KEY"] = key
    server = web_server(attach_command(url, settings.data_dir), host=host, port=port, public_url=public_url)
    print(f"watui web on http://{host}:{port} (console of {url})", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Warning: anyone who can reach {host}:{port} gets the console with an admin key. "
              "Prefer 127.0.0.1 and an SSH tunnel, or a proxy that asks for a login.", flush=True)
    try:
        server.serve()
    finally:
        if embedded is not None:
            embedded.stop()
