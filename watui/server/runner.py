"""Running the server: ``watui serve`` in the foreground, or a server in a background thread.

Shutdown order matters: on SIGTERM uvicorn stops accepting, this module's server ends every
SSE stream (so uvicorn does not wait on them), uvicorn lets running requests finish (for
:data:`GRACEFUL_SHUTDOWN_TIMEOUT` at most), and the app's lifespan then closes the manager
(engine tasks stop, running sessions are parked so the next start resumes them, the store is
flushed, engine hosts stop).

The whole of it has :data:`STOP_DEADLINE`: a process that has not ended by then (a lifespan
that hangs, a thread that does not stop) exits anyway, as it does at once on a second
SIGTERM or Ctrl-C (uvicorn alone forces only on a second Ctrl-C, and even then waits for the
lifespan). Either way engine hosts, the SQLite writer and the QR drawing process end with it:
each exits when its pipe from this process closes.

Connections are guarded by :mod:`watui.server.connections` (a header deadline, a cap, the
open-files limit raised at start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import uvicorn

from watui.config import Settings
from watui.logs import configure_logging
from watui.manager.tuning import tune_gc
from watui.server.app import ServerState, create_app
from watui.server.auth import ensure_admin_key
from watui.server.connections import (
    ConnectionLimits,
    GuardedConfig,
    log_limits,
    raise_open_files_limit,
)
from watui.stores.datadir import ADMIN_KEY_FILE

if TYPE_CHECKING:
    from watui.cluster.types import Locator
    from watui.engines.base import Engine
    from watui.manager import SessionManager

T = TypeVar("T")

log = logging.getLogger("watui.server")

STOP_DEADLINE = 10.0
"""Seconds from SIGTERM (or Ctrl-C) to the end of the process, whatever is still under way."""
GRACEFUL_SHUTDOWN_TIMEOUT = 5
"""Seconds the requests under way get to finish; closing the manager has the rest of
:data:`STOP_DEADLINE`."""
EXIT_MARGIN = 1.0
"""The deadline's exit comes this long before :data:`STOP_DEADLINE`, for the exit itself."""


def exit_now(sig: int, why: str) -> NoReturn:
    """End the process at once, with status 128 + ``sig`` (the shell's convention for a
    process ended by that signal), after a last log line.

    The line is written from a thread of its own, waited on briefly: the thread that would
    write it may hold the log handler's lock, blocked on a full stderr nobody reads.
    """
    line = threading.Thread(
        target=log.warning, args=("%s: exiting now, without finishing the shutdown", why), daemon=True,
    )
    line.start()
    line.join(0.5)
    os._exit(128 + sig)


class WatuiServer(uvicorn.Server):
    """uvicorn's server, ending the SSE streams as soon as shutdown begins."""

    def __init__(
        self,
        config: uvicorn.Config,
        state: ServerState,
        on_ready: Callable[[WatuiServer], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.watui = state
        self.on_ready = on_ready
        state.abort_client = self.abort_client
        self.stop_signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM or Ctrl-C: stop, within :data:`STOP_DEADLINE`; a second one: exit now."""
        self.stop_signals += 1
        if self.stop_signals > 1:
            exit_now(sig, f"{signal.Signals(sig).name} while stopping")
        super().handle_exit(sig, frame)
        deadline = STOP_DEADLINE - EXIT_MARGIN
        watchdog = threading.Timer(deadline, exit_now, (sig, f"not stopped {deadline:g} s after the signal"))
        watchdog.daemon = True  # it dies with the process when the process ends in time
        watchdog.start()

    def abort_client(self, client: object) -> None:
        """Abort the connection from ``client`` (host, port) at once, unsent bytes and all.

        A graceful close waits for the write buffer to drain, which a client that stopped
        reading never lets happen: its socket (a file descriptor) would stay open for ever.
        """
        if client is None:
            return
        for protocol in list(self.server_state.connections):
            if getattr(protocol, "client", None) == tuple(client):  # type: ignore[arg-type]
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport.abort()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready(self)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.watui.stop_streams()
        await super().shutdown(sockets)

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening yet")


def _config(app: Any, settings: Settings, log_level: str) -> GuardedConfig:
    return GuardedConfig(
        app,
        limits=ConnectionLimits.from_settings(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # uvicorn's loggers go to the root logger, which watui.logs formats (text or JSON,
        # secrets masked) when run from the command line.
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        # Browsers and proxies keep SSE connections open; HTTP/1.1 keep-alive for the rest.
        timeout_keep_alive=30,
        access_log=log_level == "debug",
        proxy_headers=False,
    )


async def serve(
    settings: Settings,
    *,
    manager: SessionManager | None = None,
    engine: Engine | None = None,
    log_level: str = "info",
    on_ready: Callable[[WatuiServer], None] | None = None,
    announce: bool = True,
    send_timeout: float = 30.0,
    locator: Locator | None = None,
) -> None:
    """Open the manager (unless given), make the first admin key if needed, and serve until
    told to stop. A manager given here is closed by the server's shutdown as well. A
    ``locator`` makes this server a node of a cluster (see :func:`create_app`)."""
    from watui.manager import SessionManager

    open_files = raise_open_files_limit()
    if manager is None:
        manager = await SessionManager.open(settings, engine=engine)
        tune_gc()  # the sessions just loaded live as long as the server (restore goes on in the background)
    try:
        secret = await ensure_admin_key(manager.store, settings)
    except BaseException:
        await manager.aclose()
        raise
    if secret and announce:
        key_file = settings.data_dir / ADMIN_KEY_FILE
        if settings.log_format == "text":
            print("No API key existed, so an admin key was created. It is shown once here and "
                  f"saved (mode 0600) to {key_file}:\n{secret}", flush=True)
        else:  # JSON logs go to a log shipper: keep the key out of what it collects
            print(f"No API key existed, so an admin key was created and saved (mode 0600) to {key_file}",
                  flush=True)
    app = create_app(manager, settings, owns_manager=True, send_timeout=send_timeout, locator=locator)

    def ready(server: WatuiServer) -> None:
        url = f"http://{settings.host}:{server.port}"
        if manager.data_lock is not None:
            manager.data_lock.announce(url)
        if announce:
            print(f"watui serving on {url} "
                  f"(engine {settings.engine}, data in {settings.data_dir})", flush=True)
        if on_ready is not None:
            on_ready(server)

    config = _config(app, settings, log_level)
    log_limits(settings, config.limits, open_files)
    server = WatuiServer(config, app.state.watui, ready)
    try:
        await server.serve()
    finally:
        # If uvicorn never started (port in use, …) the lifespan did not close the manager.
        await manager.aclose()


def run_server(settings: Settings) -> None:
    """``watui serve``: serve in the foreground until SIGINT/SIGTERM."""
    configure_logging(settings.log_format)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C
        sys.exit(130)


class BackgroundServer:
    """A real server on a loopback port, in a thread with its own event loop.

    For tests and benchmarks: ``start()`` returns once it listens; ``call(coro_fn)`` runs a
    coroutine on the server's loop (to reach the manager or the store); ``stop()`` shuts it
    down the way SIGTERM would.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine_factory: Callable[[], Engine] | None = None,
        log_level: str = "warning",
        port: int = 0,
        send_timeout: float = 30.0,
        locator: Locator | None = None,
    ) -> None:
        self.locator = locator
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
        self.engine_factory = engine_factory
        self.log_level = log_level
        self.send_timeout = send_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: WatuiServer | None = None
        self.manager: SessionManager | None = None
        self._thread: threading.Thread | None = None
        self._ready: Future[None] = Future()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def admin_key(self) -> str:
        return (self.settings.data_dir / ADMIN_KEY_FILE).read_text().strip()

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread = threading.Thread(target=self._run, name="watui-server", daemon=True)
        self._thread.start()
        self._ready.result(timeout)
        return self

    def _run(self) -> None:
        async def main() -> None:
            from watui.manager import SessionManager

            self.loop = asyncio.get_running_loop()
            engine = self.engine_factory() if self.engine_factory else None
            self.manager = await SessionManager.open(self.settings, engine=engine)

            def ready(server: WatuiServer) -> None:
                self.server = server
                self._ready.set_result(None)

            await serve(self.settings, manager=self.manager, log_level=self.log_level,
                        on_ready=ready, announce=False, send_timeout=self.send_timeout,
                        locator=self.locator)

        try:
            asyncio.run(main())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run ``factory()`` on the server's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout)

    def create_key(self, owner: str, *, admin: bool = False) -> str:
        assert self.manager is not None
        manager = self.manager
        _, secret = self.call(lambda: manager.store.create_api_key(owner, admin=admin))
        return secret

    def stop(self, timeout: float = 30.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - a hang is a bug worth seeing
                raise RuntimeError("the server did not stop in time")

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
