"""Shared fixtures: a manager on the simulated engine, driven by a fake clock; a fresh
PostgreSQL database for the run (the stores' and the cluster's tests)."""

from __future__ import annotations

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
