"""Nodes of a cluster for the cluster tests: N PostgreSQL stores, each on its own pool (as N
``watui serve`` processes would be), over one fresh schema in the run's database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from watui.stores.postgres import PostgresStore

OpenNodes = Callable[..., Awaitable[list[PostgresStore]]]


@pytest.fixture
async def open_nodes(pg_database: str) -> AsyncIterator[OpenNodes]:
    """``await open_nodes(n)``: n more stores on this test's schema, closed after the test."""
    schema = "c_" + secrets.token_hex(6)
    opened: list[PostgresStore] = []

    async def open_n(n: int, **options: Any) -> list[PostgresStore]:
        stores = [await PostgresStore.open(pg_database, schema=schema, **options) for _ in range(n)]
        opened.extend(stores)
        return stores

    yield open_n
    for store in opened:
        await store.close()
