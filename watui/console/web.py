"""``watui web``: the console in a browser, served by textual-serve.

textual-serve starts one console process per browser tab and relays its terminal over a
websocket. Every tab runs ``watui attach`` against one server, so the tabs share the same
sessions: with ``--attach URL`` that server is elsewhere; without it, ``watui web`` runs the
server itself, on a loopback port, over its data dir (the engine lives in this process, and
the tabs come and go). The API key reaches the tabs through the environment, never on a
command line.

Nobody gets a tab without the per-run token (:mod:`watui.console.web_access`), and the page
loads nothing from another site (:mod:`watui.console.web_pages`).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from watui.config import Settings
from watui.console import web_pages
from watui.console.attach import AttachError, normalize_url, resolve_key
from watui.console.web_access import WebAccess, new_token
from watui.errors import WatuiError


class PortInUse(OSError):
    """The web console's address is taken (another ``watui web``, or anything else)."""


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so a taken port is said at
    once in one line (and no server, lock or banner comes first)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def web_server(command: str, *, sock: socket.socket, access: WebAccess, public_url: str | None) -> Any:
    """textual-serve's server behind :class:`~watui.console.web_access.WebAccess`, serving
    :mod:`watui.console.web_pages`' console page, and ending open tabs on shutdown.

    Without the last part, a tab's websocket handler runs until its browser goes away, and
    shutdown waits for it (aiohttp's 60 s grace): SIGTERM would seem to hang. Cancelling the
    handler makes textual-serve close the socket and tell the tab's console to quit.
    """
    from aiohttp import web
    from textual_serve.server import Server

    class WebConsole(Server):
        def __init__(self) -> None:
            host, port = sock.getsockname()[:2]
            super().__init__(command, host=host, port=port, title="watui", public_url=public_url)
            self.tabs: set[asyncio.Task[Any]] = set()

        async def _make_app(self) -> web.Application:
            app = web.Application(middlewares=[access.middleware])
            app.add_routes([
                web.get("/", self.handle_page, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ])
            app.on_shutdown.append(self.on_shutdown)
            return app

        async def handle_page(self, request: web.Request) -> web.Response:
            # The websocket goes to the address the page came from (checked by the access
            # rules), so its cookie goes with it; behind a proxy, to the public URL.
            base = public_url.rstrip("/") if public_url else f"{request.scheme}://{request.host}"
            scheme = "wss" if base.startswith("https:") else "ws"
            fontsize = request.query.get("fontsize", "")
            return web_pages.console_page(
                title="watui",
                static_url="/static/",
                websocket_url=f"{scheme}://{base.split('://', 1)[1]}/ws",
                font_size=int(fontsize) if fontsize.isdigit() and 6 <= int(fontsize) <= 64 else None,
            )

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            task = asyncio.current_task()
            assert task is not None
            self.tabs.add(task)
            access.tabs += 1
            try:
                return await super().handle_websocket(request)
            finally:
                access.tabs -= 1
                self.tabs.discard(task)

        async def on_shutdown(self, app: web.Application) -> None:
            for task in list(self.tabs):
                task.cancel()

        def serve(self, debug: bool = False) -> None:
            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_exit)
            web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop,
                        print=lambda *args: None)

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
    token: str | None = None,
    max_tabs: int = 8,
) -> None:
    """Serve the console on ``http://host:port`` until SIGINT/SIGTERM.

    Raises :class:`PortInUse` before starting anything when the address is taken.
    """
    sock = listen(host, port)
    try:
        _serve(settings, sock, host=host, attach=attach, key=key, public_url=public_url,
               token=token or new_token(), max_tabs=max_tabs)
    finally:
        sock.close()


def _serve(settings: Settings, sock: socket.socket, *, host: str, attach: str | None, key: str | None,
           public_url: str | None, token: str, max_tabs: int) -> None:
    port = sock.getsockname()[1]
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
    access = WebAccess.for_server(token, host=host, port=port, public_url=public_url, max_tabs=max_tabs)
    server = web_server(attach_command(url, settings.data_dir), sock=sock, access=access, public_url=public_url)
    shown = (public_url or f"http://{_netloc_for(host, port)}").rstrip("/")
    print(f"watui web on {shown}/?token={token} (console of {url})", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Anyone who can reach {host}:{port} and has the token gets the console with an admin key. "
              "Prefer 127.0.0.1 and an SSH tunnel, or HTTPS in front (--public-url https://…).", flush=True)
    try:
        server.serve()
    finally:
        if embedded is not None:
            embedded.stop()


def _netloc_for(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
