"""Where an engine keeps a session's auth state: files under the data dir, or PostgreSQL.

Alone, watui keeps each session's auth state in a file of its own under
``<data-dir>/auth/`` (the path the manager passes as ``auth_path``). In a cluster
(``WATUI_DATABASE_URL`` set) a session can move to another node at any moment, so its auth
state lives in the shared PostgreSQL database instead and ``auth_path`` is not used: an
engine built with a ``database_url`` reads and writes its sessions' link state through a
:class:`PgAuthStore`, keyed by session id.

The table, ``engine_auth``, belongs to the engines the way whatsmeow's ``whatsmeow_*``
tables do: the engine creates it (``CREATE TABLE IF NOT EXISTS``, under an advisory lock so
engines starting together on a fresh database do not race) the first time it needs it, in
whatever process it runs (watui itself or an engine host). It is not one of the store's
migrations, so an engine works on a database whatever the store did to it.

    engine_auth(session_id text PK, engine text, data text, updated_at timestamptz)

``data`` is the engine's own record: the simulated engine's linked device (jid, phone number,
push name), or for neonize the JID that picks the session's device among whatsmeow's.

Every call is a coroutine on the running loop (asyncpg): nothing here blocks it. A save
returns once its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from watui.stores.postgres_pool import create_pool

AUTH_LOCK = 0x77617561  # "watu" + "a": the advisory lock taken while creating the table

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS engine_auth (
    session_id text PRIMARY KEY,
    engine     text NOT NULL,
    data       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class PgAuthStore:
    """The ``engine_auth`` rows of one engine kind (``engine``) in the database at ``dsn``.

    The connection pool opens at the first call, on the loop that makes it, and
    :meth:`aclose` closes it; an engine owns one store and closes it in its ``aclose``.
    """

    def __init__(self, dsn: str, engine: str, *, pool_size: int = 2) -> None:
        self.dsn = dsn
        self.engine = engine
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened (and the table created) on first use."""
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                pool = await create_pool(self.dsn, min_size=0, max_size=self._pool_size)
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", AUTH_LOCK)
                        await conn.execute(CREATE_TABLE)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction, for an engine's own SQL beside its row."""
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    async def load(self, session_id: str) -> str | None:
        """The session's record, or ``None`` when it has none (never linked, or logged out)."""
        pool = await self.pool()
        value = await pool.fetchval(
            "SELECT data FROM engine_auth WHERE session_id = $1 AND engine = $2",
            session_id, self.engine,
        )
        return None if value is None else str(value)

    async def save(self, session_id: str, data: str) -> None:
        """Store (or replace) the session's record; returns once committed."""
        pool = await self.pool()
        await pool.execute(
            "INSERT INTO engine_auth(session_id, engine, data, updated_at) VALUES ($1, $2, $3, now())"
            " ON CONFLICT (session_id) DO UPDATE"
            " SET engine = EXCLUDED.engine, data = EXCLUDED.data, updated_at = now()",
            session_id, self.engine, data,
        )

    async def delete(self, session_id: str, conn: asyncpg.Connection | None = None) -> None:
        """Forget the session's record (idempotent); on ``conn`` when given (a transaction)."""
        sql = "DELETE FROM engine_auth WHERE session_id = $1"
        if conn is not None:
            await conn.execute(sql, session_id)
        else:
            await (await self.pool()).execute(sql, session_id)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
