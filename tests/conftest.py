"""Shared fixtures: a manager on the simulated engine, driven by a fake clock; a fresh
PostgreSQL database for the run (the stores' and the cluster's tests)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
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


PG_SERVER = os.environ.get("WATUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""A PostgreSQL server (trust auth) where the run may create and drop a database."""


def _pg_admin(sql: str) -> None:
    """Run ``sql`` on the server, on a thread of its own (the caller may be inside a loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_SERVER)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of its own for this run (created on first use, dropped after the run):
    runs never see each other's rows."""
    name = "watui_test_" + secrets.token_hex(6)
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A database of its own for one test, with nothing in it (for tools that use the default
    schema, such as ``watui keys --database-url``)."""
    name = "watui_test_" + secrets.token_hex(6)
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
