"""What only the PostgreSQL backend has: migrations shared by nodes, and a lost connection."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
from sql_helpers import eventually

from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.models import NewEvent
from watui.stores.postgres import PostgresStore
from watui.stores.postgres_schema import SCHEMA_VERSION
from watui.stores.postgres_writer import _alive


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


async def test_a_connection_lost_mid_commit_refuses_that_write_and_one_lost_idle_is_replaced(
    pg_database: str,
) -> None:
    """The writer's connection killed while a commit waits on it: that write is refused
    (``StoreUnavailable``, nothing half-written) and the next one succeeds on a new
    connection. Killed while idle: the next write simply takes a new connection."""
    schema = "t_" + secrets.token_hex(6)
    store = await PostgresStore.open(pg_database, schema=schema)
    admin = await asyncpg.connect(pg_database, server_settings={"search_path": schema})
    try:
        first = await store.append([event(1)])
        assert store._writer is not None
        # A commit takes the event counter's row lock first: hold it, so the next one waits
        # there, then end the writer's backend under it (pg_terminate_backend with a timeout
        # returns once the backend is gone).
        holder = admin.transaction()
        await holder.start()
        await admin.execute("UPDATE event_seq SET last = last")
        pid = store._writer.get_server_pid()
        waiting = asyncio.ensure_future(store.append([event(2)]))
        await eventually(lambda: admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", pid),
            what="the commit to wait on the counter's lock")
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
        with pytest.raises(StoreUnavailable):
            await waiting
        assert store.failing is not None
        await holder.rollback()
        again = await store.append([event(3)])
        assert store.failing is None
        assert await store.read_events() == first + again

        # Lost while idle: no write is refused.
        pid = store._writer.get_server_pid()
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
        await eventually(lambda: not _alive(store._writer), what="the client to see its connection end")
        later = await store.append([event(4)])
        assert store.failing is None and store._writer.get_server_pid() != pid
        assert await store.read_events() == first + again + later
    finally:
        await admin.close()
        await store.close()
