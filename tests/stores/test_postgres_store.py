"""What only the PostgreSQL backend has: migrations shared by nodes, and a lost connection."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.models import NewEvent
from watui.stores.postgres import PostgresStore
from watui.stores.postgres_schema import SCHEMA_VERSION


def event(i: int) -> NewEvent:
    return NewEvent(type=EventType.STATUS, session_id="ses_a", owner="alice", payload={"i": i})


async def test_nodes_starting_together_migrate_once(pg_database: str) -> None:
    schema = "t_" + secrets.token_hex(6)
    stores = await asyncio.gather(*(PostgresStore.open(pg_database, schema=schema) for _ in range(3)))
    try:
        conn = await asyncpg.connect(pg_database, server_settings={"search_path": schema})
        try:
            assert await conn.fetchval("SELECT version FROM watui_schema") == SCHEMA_VERSION
            assert await conn.fetchval("SELECT COUNT(*) FROM watui_schema") == 1
        finally:
            await conn.close()
        ids = [e.id for s in stores for e in await s.append([event(1)])]
        assert sorted(ids) == [1, 2, 3]
    finally:
        for store in stores:
            await store.close()


async def test_newer_schema_is_refused(pg_database: str) -> None:
    schema = "t_" + secrets.token_hex(6)
    store = await PostgresStore.open(pg_database, schema=schema)
    await store.close()
    conn = await asyncpg.connect(pg_database, server_settings={"search_path": schema})
    await conn.execute("UPDATE watui_schema SET version = $1", SCHEMA_VERSION + 1)
    await conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await PostgresStore.open(pg_database, schema=schema)


async def test_a_lost_connection_refuses_the_write_then_the_store_recovers(pg_database: str) -> None:
    store = await PostgresStore.open(pg_database, schema="t_" + secrets.token_hex(6))
    try:
        first = await store.append([event(1)])
        assert store._writer is not None
        pid = store._writer.get_server_pid()
        admin = await asyncpg.connect(pg_database)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(StoreUnavailable):
            await store.append([event(2)])
        assert store.failing is not None
        again = await store.append([event(3)])
        assert store.failing is None
        assert await store.read_events() == first + again
    finally:
        await store.close()
