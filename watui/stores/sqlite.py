"""The store: SQLite in WAL mode, with a versioned schema.

Writes go through one writer task that *group-commits* (:mod:`watui.stores.group_commit`):
whatever is queued while a commit is in flight goes into the next transaction, so a burst of
a thousand events costs a handful of fsyncs instead of a thousand. A write's future resolves
only after its transaction has committed, so anything reported as written survives a
``kill -9``. The transactions run in a writer process with a connection of its own
(:mod:`watui.stores.sqlite_writer`), so SQLite writes while the event loop works.

Reads use a second connection, through aiosqlite. In WAL mode it never sees a transaction
that has not committed, so a reader can never hand out an event that a crash could still
take back.

:class:`Store` is put together here from its parts, one module each, and opened and closed
here; the rest lives beside it:

- :mod:`~watui.stores.sqlite_schema`: the migrations, applied when the store opens;
- :mod:`~watui.stores.sqlite_pipeline`: the write path (batches assembled into transactions
  and handed to the writer process);
- :mod:`~watui.stores.sqlite_reads`: sessions and the event log, on the reader connection;
- :mod:`~watui.stores.sqlite_messages`: the message log;
- :mod:`~watui.stores.sqlite_api_keys`: API keys.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import aiosqlite

from watui.stores.datadir import private_database_files
from watui.stores.sqlite_api_keys import SqliteApiKeys
from watui.stores.sqlite_messages import SqliteMessages
from watui.stores.sqlite_pipeline import PipelinedWriter
from watui.stores.sqlite_reads import SqliteReads
from watui.stores.sqlite_schema import migrate, next_ids
from watui.stores.sqlite_writer import SqliteWriter

__all__ = ["Store"]


class Store(SqliteApiKeys, SqliteMessages, SqliteReads, PipelinedWriter):
    """Sessions, the append-only event log, API keys and messages (the SQLite backend of
    :class:`watui.stores.base.StoreProtocol`)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"
    """The SQL that ``fetchall`` and ``write(statements=...)`` take."""

    def __init__(
        self,
        path: Path,
        writer: SqliteWriter,
        reader: aiosqlite.Connection,
        *,
        max_batch: int,
    ) -> None:
        super().__init__(writer, max_batch=max_batch)
        self.path = path
        self._r = reader

    @classmethod
    async def open(
        cls, path: Path | str, *, synchronous: str = "FULL", max_batch: int = 64
    ) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        private_database_files(path)
        writer = await SqliteWriter.open(path, pragmas=[
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ])
        try:
            await migrate(writer)
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        store = cls(path, writer, reader, max_batch=max_batch)
        try:
            await reader.execute("PRAGMA busy_timeout=5000")
            reader.row_factory = aiosqlite.Row
            store._next_event_id, store._next_message_id = await next_ids(writer)
            store.last_committed_id = await store.max_event_id()
        except BaseException:  # no writer process or reader thread left behind
            await writer.close()
            await reader.close()
            raise
        store._start_writer("watui-store-writer")
        return store

    async def close(self) -> None:
        """Flush every queued write, then close both connections."""
        if not await self._stop_writer():
            return
        with contextlib.suppress(Exception):
            await self.writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        await self.writer.close()
        await self._r.close()
