"""The store on PostgreSQL through asyncpg: the store of record that the nodes of a cluster share.

It keeps :class:`watui.stores.sqlite.Store`'s promises (see :mod:`watui.stores.base`): writes are
group-committed by one writer task, and a write's future resolves only after its transaction
committed. Event ids are assigned in commit order, so a reader that resumes after an id never
misses an event.

:class:`PostgresStore` is put together from its parts, each in a module of its own:

- :mod:`watui.stores.postgres_writer`: the pool and the write path (group commit, the
  commit-ordered event ids, outages, NUL characters, what a commit tells the cluster's fan-out:
  :class:`Committed`);
- :mod:`watui.stores.postgres_fencing`: in cluster mode, refusing the writes of a node that lost
  a session's lease (:class:`Fence`);
- :mod:`watui.stores.postgres_log`: reads of the event log;
- :mod:`watui.stores.postgres_messages`: the messages table;
- :mod:`watui.stores.postgres_api_keys`: API keys;
- :mod:`watui.stores.postgres_schema`: the migrations, run when the store opens.

Here: opening (connect, migrate, start the writer), closing, and reading the sessions back.

**NUL characters.** PostgreSQL ``text`` cannot hold U+0000: this store writes U+FFFD for each
NUL in plain text columns, while JSON (event payloads, session documents, webhook bodies) keeps
it as the escape ``\\u0000`` (see :mod:`watui.stores.postgres_writer`).
"""

from __future__ import annotations

from collections.abc import Sequence

from watui.models import Session
from watui.stores.base import Dialect, StoreProtocol
from watui.stores.postgres_api_keys import PostgresApiKeys
from watui.stores.postgres_fencing import Fence
from watui.stores.postgres_log import PostgresEventLog
from watui.stores.postgres_messages import PostgresMessages
from watui.stores.postgres_pool import create_pool
from watui.stores.postgres_schema import migrate
from watui.stores.postgres_writer import Committed
from watui.stores.sqlite import Store

__all__ = ["Committed", "Fence", "PostgresStore"]
"""The store, and the types of its :attr:`~PostgresStore.on_commit_batch` and
:attr:`~PostgresStore.fencing`."""


class PostgresStore(PostgresEventLog, PostgresMessages, PostgresApiKeys):
    """Sessions, the commit-ordered event log, messages and API keys in PostgreSQL."""

    dialect: Dialect = "postgresql"

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_batch: int = 64,
        pool_size: int = 4,
        schema: str | None = None,
        stalled_transaction_timeout: float | None = None,
    ) -> PostgresStore:
        """Connect, migrate and start the writer. ``schema`` puts the tables in that schema
        (created if missing) instead of ``public``: several stores can share one database.

        ``stalled_transaction_timeout`` (seconds): PostgreSQL ends this store's connections
        when one sits idle inside a transaction that long (``idle_in_transaction_session_timeout``).
        A cluster node sets it below its lease TTL: a node paused in the middle of a commit
        (SIGSTOP, a VM frozen) holds the event counter's row lock and its sessions' lease rows,
        which would stop every other node's writes and takeovers until it woke; the server
        rolls that transaction back instead (nothing of it was acknowledged)."""
        settings: dict[str, str] = {"search_path": schema} if schema else {}
        if stalled_transaction_timeout is not None:
            settings["idle_in_transaction_session_timeout"] = str(max(1, round(stalled_transaction_timeout * 1000)))
        pool = await create_pool(dsn, min_size=1, max_size=max(2, pool_size), server_settings=settings or None)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema)
        except BaseException:
            await pool.close()
            raise
        store = cls(pool, max_batch=max_batch)
        store.last_committed_id = await store.max_event_id()
        store._start_writer("watui-pg-store-writer")
        return store

    async def close(self) -> None:
        """Flush every queued write, then close the pool."""
        if not await self._stop_writer():
            return
        await self._drop_writer_connection()
        await self._pool.close()

    # ---------------------------------------------------------------- sessions

    async def load_sessions(self) -> list[Session]:
        rows = await self.fetchall("SELECT doc FROM sessions ORDER BY seq")
        return [Session.model_validate_json(row[0], context={"stored": True}) for row in rows]

    async def load_sessions_by_id(self, session_ids: Sequence[str]) -> tuple[list[Session], list[str]]:
        """The stored snapshots of ``session_ids`` (in that order), and the ids that have none
        (deleted): how a cluster node refreshes sessions another node changed."""
        rows = await self.fetchall("SELECT id, doc FROM sessions WHERE id = ANY($1::text[])", (list(session_ids),))
        found = {row[0]: row[1] for row in rows}
        sessions = [
            Session.model_validate_json(found[sid], context={"stored": True})
            for sid in session_ids if sid in found
        ]
        return sessions, [sid for sid in session_ids if sid not in found]


def _conforms(sqlite: Store, postgres: PostgresStore) -> tuple[StoreProtocol, StoreProtocol]:
    """Never called: mypy checks here that both backends keep the protocol."""
    return sqlite, postgres
