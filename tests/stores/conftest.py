"""Both store backends behind one fixture: SQLite in a temporary directory, PostgreSQL in a
fresh database made for this test run (``pg_database``, tests/pg_server.py), one schema per
test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from watui.stores.base import StoreProtocol
from watui.stores.postgres import PostgresStore
from watui.stores.sqlite import Store

OpenStore = Callable[[], Awaitable[StoreProtocol]]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[OpenStore]:
    """``await open_store()`` opens one more store on this test's data: for PostgreSQL each is
    its own pool (as another node would be); for SQLite, one process owns the file, so it is
    the same store again (or a new one on the same file once that one is closed)."""
    opened: list[StoreProtocol] = []
    schema = "t_" + secrets.token_hex(6)

    async def open_one() -> StoreProtocol:
        if backend == "sqlite":
            if not opened or opened[-1].closed:
                opened.append(await Store.open(tmp_path / "watui.db", synchronous="NORMAL"))
            return opened[-1]
        dsn = request.getfixturevalue("pg_database")
        store = await PostgresStore.open(dsn, schema=schema)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> StoreProtocol:
    return await open_store()
