"""Both store backends behind one fixture: SQLite in a temporary directory, PostgreSQL in a
fresh database made for this test run (and dropped after it), one schema per test."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from watui.store import Store
from watui.stores.base import StoreProtocol
from watui.stores.postgres import PostgresStore

SERVER = os.environ.get("WATUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""A PostgreSQL server (trust auth) where the run may create and drop a database."""

OpenStore = Callable[[], Awaitable[StoreProtocol]]


def _admin(sql: str) -> None:
    """Run ``sql`` on the server, on a thread of its own (the caller may be inside a loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(SERVER)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of its own for this run: runs never see each other's rows."""
    name = "watui_test_" + secrets.token_hex(6)
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A database of its own for one test, with nothing in it (for tools that use the default
    schema, such as ``watui keys --database-url``)."""
    name = "watui_test_" + secrets.token_hex(6)
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
