"""Helpers for the attach tests: real servers on loopback (a thread, in this test's own event
loop, or a ``watui serve`` subprocess that can be killed and restarted on the same port) and
a console attached to one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from serve_process import ServerProcess
from textual.pilot import Pilot

import watui.app
from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.manager import SessionManager
from watui.models import Caller
from watui.remote import Backoff, RemoteService
from watui.server import BackgroundServer
from watui.server.app import create_app
from watui.server.auth import ensure_admin_key
from watui.server.runner import WatuiServer, _config


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


def api(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=15)


async def linked_session(client: httpx.AsyncClient, name: str) -> str:
    """Create a session over the API and play the phone scanning its code: connected."""
    session_id: str = (await client.post("/sessions", json={"name": name})).json()["session_id"]
    await poll(client, session_id, "qr_ready")
    scanned = await client.post(f"/sessions/{session_id}/simulate", json={"action": "scan"})
    assert scanned.status_code == 200, scanned.text
    await poll(client, session_id, "connected")
    return session_id


async def poll(client: httpx.AsyncClient, session_id: str, status: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get(f"/sessions/{session_id}")).json()["status"] != status:
        assert time.monotonic() < deadline, f"{session_id} never became {status}"
        await asyncio.sleep(0.01)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.01)


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


class ShownAt(httpx.AsyncBaseTransport):
    """Requests to a fixed, made-up address (the one the header shows, so snapshots repeat)
    go to the server's real loopback port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ServedConsole:
    """``watui serve`` in the test's own event loop, for a console to attach to.

    The server is the real one (``create_app`` under uvicorn, on a loopback socket bound here)
    over a manager on the tests' fake clock and simulated engine: ``clock.advance`` moves the
    server as it moves an in-process console, so one test runs the same on both services.
    The console's service is a :class:`RemoteService` made at once (its URL is known: the
    socket is bound), keyed when the server starts, in :meth:`AttachedApp.run_test`.
    ``stop_server`` and ``start_server`` take the server away and bring it back at the same
    address (the console keeps running); ``shown_url`` is the address the console shows.
    """

    def __init__(self, settings: Settings, engine: SimulatedEngine, clock: FakeClock, caller: Caller, *,
                 backoff: Backoff | None = None, shown_url: str | None = None, health_every: float = 0.1) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.wanted = caller
        self.sock: socket.socket | None = self._bind(0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = RemoteService(
            shown_url or self.url, "", engine=settings.engine, clock=clock,
            backoff=backoff or Backoff(first=0.02, cap=0.2), health_every=health_every,
            transport=ShownAt(self.port) if shown_url else None)
        self.manager: SessionManager | None = None
        self.caller = caller
        """The server's caller for the console's key (the admin key's owner is ``admin``)."""
        self.server: WatuiServer | None = None
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    async def start(self) -> None:
        await self.start_server()
        assert self.manager is not None
        secret = (self.settings.data_dir / "admin.key").read_text().strip()
        self.caller = Caller(owner="admin", admin=True)
        if not self.wanted.admin:
            _, secret = await self.manager.store.create_api_key(self.wanted.owner)
            self.caller = Caller(owner=self.wanted.owner)
        self.service.client.headers["Authorization"] = f"Bearer {secret}"

    async def start_server(self) -> None:
        """The server up (again), on the same port, over a manager opened now (a restart
        restores the sessions the last one parked)."""
        manager = self.manager = await SessionManager.open(self.settings, engine=self.engine, clock=self.clock)
        await ensure_admin_key(manager.store, self.settings)
        app = create_app(manager, self.settings, owns_manager=True)
        started = asyncio.Event()
        self.server = WatuiServer(_config(app, self.settings, "warning"), app.state.watui,
                                  lambda _: started.set())
        sock = self.sock or self._bind(self.port)
        self.sock = None  # uvicorn closes it when it stops
        sock.listen()
        # _serve: uvicorn's serve() without taking over the signals of the test process.
        task = self._task = asyncio.create_task(self.server._serve([sock]))
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED, timeout=20)
        if not started.is_set():
            waiting.cancel()
            raise RuntimeError("the in-loop server did not start")

    async def stop_server(self) -> None:
        """Shut the server down as SIGTERM would (its streams end, its sessions are parked)."""
        if self.server is not None and self._task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self._task, 30)
        self.server = self._task = None

    async def stop(self) -> None:
        await self.service.aclose()
        await self.stop_server()
        if self.sock is not None:
            self.sock.close()

    async def settle(self, pilot: Pilot[Any], timeout: float = 20.0) -> None:
        """Wait until the console has caught up with the server: the server idle, every event
        it logged for this caller handed to the app, and no request under way, twice in a
        row (a worker may chain calls). Real time passes here (a real socket is in between):
        it polls, with a deadline."""
        app = pilot.app
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"the attached console did not catch up with the server in {timeout} s")
            if self.server is not None and self.manager is not None:
                await self.manager.drain_all()
            if not self.service.busy and await self._events_delivered():
                quiet += 1
                await pilot.pause()
            else:
                quiet = 0
                await pilot.pause(0.005)
            await app.settle()  # type: ignore[attr-defined]

    async def _events_delivered(self) -> bool:
        subscriptions = self.service.subscriptions
        if self.server is None or self.manager is None or not subscriptions:
            return True  # no server: nothing more will come
        after = min(s.last_id for s in subscriptions)
        newer = await self.manager.service(self.caller).list_events(after_id=after, limit=1)
        return not newer


class AttachedApp(WatuiApp):
    """The console over a :class:`ServedConsole`: the server starts with the test's
    ``run_test`` (or ``run``) and stops with it."""

    CSS_PATH = str(Path(watui.app.__file__).with_name("watui.tcss"))  # not beside this module

    def __init__(self, served: ServedConsole, **kwargs: Any) -> None:
        super().__init__(service=served.service, link=served.service.link, **kwargs)
        self.served = served

    @contextlib.asynccontextmanager
    async def run_test(self, *args: Any, **kwargs: Any) -> AsyncIterator[Pilot[None]]:  # type: ignore[override]
        await self.served.start()
        try:
            async with super().run_test(*args, **kwargs) as pilot:
                yield pilot
        finally:
            await self.served.stop()

    async def run_async(self, *args: Any, **kwargs: Any) -> Any:
        """``app.run`` (snapshots): the same, around the run."""
        await self.served.start()
        try:
            return await super().run_async(*args, **kwargs)
        finally:
            await self.served.stop()
