"""Shared fixtures: a manager on the simulated engine, driven by a fake clock; a fresh
PostgreSQL database for the run (the stores' and the cluster's tests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pg_server import fresh_pg_database, pg_database  # noqa: F401  (fixtures for every test module)
from webhook_receiver import receivers  # noqa: F401  (a fixture for every test module)

from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.manager import ScopedService, SessionManager
from watui.models import Caller

# The overload check on event-loop lag (WATUI_OVERLOAD_LAG_MS) measures the machine, and a
# loaded CI machine would turn a test's request into 503 OVERLOADED. Off for every server the
# tests start (in this process or as a subprocess, which inherits it); the tests of the check
# set it themselves.
os.environ.setdefault("WATUI_OVERLOAD_LAG_MS", "0")

# pytest-xdist's workers run with COLUMNS=80 and LINES=24 in their environment. Textual and
# rich take those over the terminal's own size, so a console the tests start on a 120x40
# pseudo-terminal (or a rich console drawing a QR code) would be 80x24. The size is the
# terminal's, as in a real login.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL")


@pytest.fixture
def engine(clock: FakeClock) -> SimulatedEngine:
    return SimulatedEngine(clock=clock, seed=7)


@pytest.fixture
async def manager(settings: Settings, engine: SimulatedEngine, clock: FakeClock) -> AsyncIterator[SessionManager]:
    manager = await SessionManager.open(settings, engine=engine, clock=clock)
    yield manager
    await manager.aclose()


@pytest.fixture
def admin(manager: SessionManager) -> ScopedService:
    return manager.service(Caller.local_admin())
