"""Fixtures for the console tests: a deterministic app over a real manager and simulated engine.

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


@pytest.fixture
def make_app(settings: Settings, engine: SimulatedEngine, clock: FakeClock) -> AppFactory:
    """A console that opens its own manager in its own loop (works for pilot and snapshot tests)."""

    def make(*, caller: Caller | None = None, settings_: Settings | None = None, **kwargs: Any) -> WatuiApp:
        chosen = settings_ or settings

        async def open_manager() -> SessionManager:
            return await SessionManager.open(chosen, engine=engine, clock=clock)

        app = WatuiApp(open_manager=open_manager, caller=caller, clock=clock, cursor_blink=False,
                       refresh_interval=0.01, **kwargs)
        app.animation_level = "none"
        return app

    return make


Step = Callable[[Any], Awaitable[None]]


async def sync(pilot: Any, clock: FakeClock | None = None, seconds: float | None = None) -> None:
    """Move the fake clock (if asked), then let events reach the app and the screens redraw."""
    app: WatuiApp = pilot.app
    await app.ready.wait()
    if clock is not None and seconds is not None:
        await clock.advance(seconds)
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
