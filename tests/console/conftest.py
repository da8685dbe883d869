"""Fixtures for the console tests: a deterministic app over a real manager and simulated engine.

``make_app`` gives the console over either service, and every test that uses it runs twice:
``[local]``, the engine in-process (the manager's ``ScopedService``), and ``[remote]``,
attached over HTTP and SSE to a real server (``watui.server``'s app under uvicorn, on a
loopback socket, in the test's loop and on the same fake clock: see ``ServedConsole``). So
the console cannot work on one and not on the other unnoticed. Snapshot tests (the ones that
use ``snap_compare``) and tests marked ``local_only`` run in-process only.

Determinism for snapshots: a fake clock (relative times and countdowns), a fixed engine seed
and session ids (so QR payloads repeat), no cursor blink, no animations. Snapshots are stored
under the top-level ``snapshots/`` directory.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_textual_snapshot
from syrupy.location import PyTestLocation

import watui.manager.commands
from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import Status
from watui.manager import SessionManager
from watui.models import Caller, Session, SessionCreate, SimulateRequest

from .attach_helpers import AttachedApp, ServedConsole

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_DIR = ROOT / "snapshots"
START = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


class TopLevelSVGExtension(pytest_textual_snapshot.SVGImageExtension):
    """pytest-textual-snapshot's SVG extension, storing files in ``snapshots/console/<module>/``."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOT_DIR / "console" / test_location.basename)


@pytest.fixture
def snapshot(snapshot: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # ``snap_compare`` picks its extension class from the plugin module when it is set up,
    # which happens after this fixture: swap the class there.
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", TopLevelSVGExtension)
    return snapshot


class _FixedSecrets:
    """``secrets`` for the manager with counting session ids: the same ids, the same QR codes."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def token_hex(self, nbytes: int = 32) -> str:
        return f"{next(self._n):0{2 * nbytes}x}"

    def __getattr__(self, name: str) -> Any:
        return getattr(secrets, name)


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watui.manager.commands, "secrets", _FixedSecrets())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="OFF")


@pytest.fixture
def engine(clock: FakeClock) -> SimulatedEngine:
    return SimulatedEngine(clock=clock, seed=7, connect_latency=0.5, link_latency=1.0, persist_auth=False)


AppFactory = Callable[..., WatuiApp]

SERVICES = ("local", "remote")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_only(reason): a console test that runs in-process only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of ``make_app`` on both services; snapshots (and ``local_only``) in-process."""
    if "service" not in metafunc.fixturenames:
        return
    if "snap_compare" in metafunc.fixturenames or metafunc.definition.get_closest_marker("local_only"):
        return  # in-process only, under the test's own name (snapshot files are named after it)
    metafunc.parametrize("service", list(SERVICES), indirect=True)


@pytest.fixture
def service(request: pytest.FixtureRequest) -> str:
    """Which service the console runs over: ``local`` or ``remote`` (see the module's doc)."""
    return str(getattr(request, "param", "local"))


@pytest.fixture
def make_app(service: str, settings: Settings, engine: SimulatedEngine, clock: FakeClock) -> AppFactory:
    """A console over the service of this run: its own manager in its own loop (local), or
    attached to a server on the same engine and clock (remote). The server starts and stops
    with ``app.run_test()``."""

    def make(*, caller: Caller | None = None, settings_: Settings | None = None, **kwargs: Any) -> WatuiApp:
        chosen = settings_ or settings
        options: dict[str, Any] = {"clock": clock, "cursor_blink": False, "refresh_interval": 0.01, **kwargs}
        app: WatuiApp
        if service == "remote":
            app = AttachedApp(ServedConsole(chosen, engine, clock, caller or Caller.local_admin()), **options)
        else:

            async def open_manager() -> SessionManager:
                return await SessionManager.open(chosen, engine=engine, clock=clock)

            app = WatuiApp(open_manager=open_manager, caller=caller, **options)
        app.animation_level = "none"
        return app

    return make


def served(app: WatuiApp) -> ServedConsole | None:
    """The server an attached test console drives (``None`` in-process)."""
    return app.served if isinstance(app, AttachedApp) else None


def engine_room(app: WatuiApp) -> SessionManager:
    """The manager behind the console: its own, or the server's."""
    server = served(app)
    manager = server.manager if server is not None else app.manager
    assert manager is not None
    return manager


Step = Callable[[Any], Awaitable[None]]


async def sync(pilot: Any, clock: FakeClock | None = None, seconds: float | None = None) -> None:
    """Move the fake clock (if asked), then let events reach the app and the screens redraw
    (attached: once the console has caught up with the server)."""
    app: WatuiApp = pilot.app
    await app.ready.wait()
    if clock is not None and seconds is not None:
        await clock.advance(seconds)
    server = served(app)
    if server is not None:
        await server.settle(pilot)
    for _ in range(4):
        await pilot.pause()
        await app.settle()
    await pilot.pause()


async def wait_until(pilot: Any, predicate: Callable[[], bool], what: str, rounds: int = 50) -> None:
    """Yield to the app until ``predicate`` holds; fail with ``what`` otherwise (no sleeps)."""
    for _ in range(rounds):
        if predicate():
            return
        await sync(pilot)
    raise AssertionError(f"timed out waiting for: {what}")


def spec(name: str, **more: Any) -> SessionCreate:
    return SessionCreate.model_validate({"name": name, **more})


def act(action: str, **more: Any) -> SimulateRequest:
    return SimulateRequest.model_validate({"action": action, **more})


async def link(pilot: Any, clock: FakeClock, name: str, **more: Any) -> Session:
    """Create a session through the service and play the phone scanning it: connected."""
    app: WatuiApp = pilot.app
    await app.ready.wait()
    session = await app.service.create_session(spec(name, **more))
    await clock.advance(0.5)
    await app.service.simulate(session.id, act("scan"))
    await clock.advance(1.0)
    await sync(pilot)
    linked = app.state.sessions[session.id]
    assert linked.status == Status.CONNECTED, linked
    return linked


def find(app: WatuiApp, name: str) -> Session:
    for session in app.state.sessions.values():
        if session.name == name:
            return session
    raise AssertionError(f"no session named {name!r}")


def row_names(app: WatuiApp) -> list[str]:
    from watui.widgets.sessions_table import SessionsTable

    return [s.name for s in app.screen.query_one(SessionsTable).rows]


def plain(widget: Any) -> str:
    """What a Static shows, as plain text (its content rendered by Rich, 200 columns wide)."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()  # type: ignore[attr-defined]
