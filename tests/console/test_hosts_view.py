"""The engine hosts view (``H``) and the toast when a host dies.

Snapshots use fixed host data (pids and start times would otherwise change every run); the
pilot test runs the console over real engine host processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.hosts import HostedEngine
from watui.engines.simulated import SimulatedEngine
from watui.engines.spec import EngineSpec
from watui.machine import Status
from watui.manager import SessionManager
from watui.models import EngineHost
from watui.screens.hosts import NONE_RUNNING, HostsScreen

from .conftest import START, AppFactory, act, find, link, plain, spec, sync, wait_until

Pilot = Any
SnapCompare = Callable[..., bool]


class FixedHostsEngine(SimulatedEngine):
    """The simulated engine, reporting a fixed list of hosts (for the snapshots only)."""

    fixed_hosts: list[EngineHost] = []

    def hosts(self) -> list[EngineHost]:
        return list(self.fixed_hosts)


@pytest.fixture
def engine(clock: FakeClock) -> SimulatedEngine:
    return FixedHostsEngine(clock=clock, seed=7, connect_latency=0.5, link_latency=1.0, persist_auth=False)


def hosts_scene(clock: FakeClock, engine: SimulatedEngine) -> Callable[[Pilot], Awaitable[None]]:
    async def run_before(pilot: Pilot) -> None:
        app: WatuiApp = pilot.app
        for name in ("sales-desk", "support", "warehouse", "billing"):
            await link(pilot, clock, name)
        await app.service.create_session(spec("kiosk-lobby-tablet-with-a-long-name"))
        await sync(pilot, clock, 0.5)
        ids = {s.name: s.id for s in app.state.sessions.values()}
        assert isinstance(engine, FixedHostsEngine)
        engine.fixed_hosts = [
            EngineHost(id="host-4", pid=48213, sessions=[ids["sales-desk"], ids["support"], ids["warehouse"]],
                       started_at=START - timedelta(hours=2, minutes=5), connects=37, restarts=3, crashes=1),
            EngineHost(id="host-7", pid=51877, sessions=[ids["billing"], ids["kiosk-lobby-tablet-with-a-long-name"]],
                       started_at=START - timedelta(minutes=12, seconds=40), connects=2, restarts=0),
        ]
        await pilot.press("H")
        await sync(pilot, clock, 3)

    return run_before


def test_hosts_view_large(
    snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=hosts_scene(clock, engine))


def test_hosts_view_small(
    snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=hosts_scene(clock, engine))


async def test_hosts_view_says_when_engines_run_inline(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.ready.wait()
        await pilot.press("H")
        await sync(pilot)
        assert isinstance(app.screen, HostsScreen)
        assert NONE_RUNNING in plain(app.screen.query_one("#hosts-empty"))
        await pilot.press("escape")
        await sync(pilot)
        assert not isinstance(app.screen, HostsScreen)


async def test_console_over_real_hosts_lists_them_and_toasts_a_crash(tmp_path: Path) -> None:
    engine = HostedEngine(EngineSpec("simulated", {"connect_latency": 0.02, "link_latency": 0.02}))
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="OFF",
                        reconnect_base_delay=0.1, reconnect_max_delay=0.2)

    async def open_manager() -> SessionManager:
        return await SessionManager.open(settings, engine=engine)

    app = WatuiApp(open_manager=open_manager, cursor_blink=False, refresh_interval=0.01)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await app.ready.wait()
        session = await app.service.create_session(spec("front-desk"))
        await wait_until(pilot, lambda: find(app, "front-desk").status == Status.QR_READY, "a QR code", rounds=200)
        await app.service.simulate(session.id, act("scan"))
        await wait_until(pilot, lambda: find(app, "front-desk").status == Status.CONNECTED, "linked", rounds=200)
        await pilot.press("H")
        await wait_until(pilot, lambda: isinstance(app.screen, HostsScreen) and app.screen.hosts is not None,
                         "the hosts view")
        screen = app.screen
        assert isinstance(screen, HostsScreen) and screen.hosts is not None
        assert [h.sessions for h in screen.hosts] == [[session.id]]
        pid = screen.hosts[0].pid
        assert pid is not None and pid != os.getpid()

        os.kill(pid, signal.SIGKILL)

        def toasted() -> bool:
            return any("engine host process ended" in (n.title or "") for n in app._notifications)

        await wait_until(pilot, toasted, "the crash toast", rounds=300)
        await wait_until(pilot, lambda: find(app, "front-desk").status == Status.CONNECTED,
                         "reconnected in a fresh host", rounds=300)
        await screen.reload()
        assert screen.hosts and screen.hosts[0].pid != pid and screen.hosts[0].restarts == 1
        assert screen.hosts[0].crashes == 1  # killed: a crash, not an idle stop
