"""The PostgreSQL store's reads of the event log: committed events after an id, a session's
latest ones, and the log's bounds.

Ids are assigned in commit order (see :mod:`watui.stores.postgres_writer`), so a reader that
sees id N sees every id below it and can resume after the last id it read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from watui.machine import EventType
from watui.models import Event
from watui.stores.postgres_writer import PostgresWriter

_EVENT_COLUMNS = "id, type, session_id, owner, ts, payload"


def _event(row: Any) -> Event:
    return Event(id=row[0], type=EventType(row[1]), session_id=row[2], owner=row[3],
                 timestamp=row[4], payload=json.loads(row[5]))


class PostgresEventLog(PostgresWriter):
    """The event log's reads (the writer appends to it)."""

    async def read_events(
        self,
        *,
        after_id: int = 0,
        owner: str | None = None,
        session_id: str | None = None,
        types: Iterable[EventType] | None = None,
        limit: int = 500,
    ) -> list[Event]:
        """Committed events after ``after_id``, oldest first."""
        where = ["id > $1"]
        params: list[Any] = [after_id]
        if owner is not None:
            params.append(owner)
            where.append(f"owner = ${len(params)}")
        if session_id is not None:
            params.append(session_id)
            where.append(f"session_id = ${len(params)}")
        if types is not None:
            params.append([t.value for t in types])
            where.append(f"type = ANY(${len(params)}::text[])")
        params.append(limit)
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)}"
            f" ORDER BY id LIMIT ${len(params)}",
            params,
        )
        return [_event(row) for row in rows]

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """A session's latest events, oldest first."""
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = $1 ORDER BY id DESC LIMIT $2",
            (session_id, limit),
        )
        return [_event(row) for row in reversed(rows)]

    async def max_event_id(self) -> int:
        """The newest committed id of the whole cluster (the counter: a read never waits for
        its lock, and sees only committed values)."""
        newest = int(await self._pool.fetchval("SELECT last FROM event_seq"))
        self.last_committed_id = max(self.last_committed_id, newest)
        return newest

    async def oldest_event_id(self) -> int:
        """The oldest id the log still keeps; one past the newest if it keeps none."""
        oldest = await self._pool.fetchval("SELECT MIN(id) FROM events")
        return int(oldest) if oldest is not None else await self.max_event_id() + 1

    async def count_events(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM events"))
