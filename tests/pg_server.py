"""The PostgreSQL server the tests use, and a fresh database of its own for each test run.

``pg_database`` is a fixture for every test module (tests/conftest.py imports it): the run
creates a database with a random name at its first use and drops it at the end, so runs never
see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

SERVER = os.environ.get("WATUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""A PostgreSQL server (trust auth) where the run may create and drop a database."""


def admin_sql(sql: str) -> None:
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
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A database of its own for one test, with nothing in it (for tools that use the default
    schema, such as ``watui keys --database-url``, and for a cluster of ``watui serve`` nodes)."""
    name = "watui_test_" + secrets.token_hex(6)
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
