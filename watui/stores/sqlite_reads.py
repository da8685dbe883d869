"""The SQLite store's reads of sessions and the event log, on its reader connection (aiosqlite).

In WAL mode that connection never sees a transaction that has not committed, so a read can
never hand out an event that a crash could still take back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from watui.machine import EventType
from watui.models import Event, Session


def parse_ts(value: str) -> datetime:
    """A stored timestamp (ISO 8601 text) as a datetime."""
    return datetime.fromisoformat(value)


def _event(row: Any) -> Event:
    """An ``events`` row (id, type, session_id, owner, ts, payload) as an Event."""
    return Event(id=row[0], type=EventType(row[1]), session_id=row[2], owner=row[3],
                 timestamp=parse_ts(row[4]), payload=json.loads(row[5]))


class SqliteReads:
    """Reads on the reader connection; the store's other parts read through :meth:`_fetch`."""

    _r: aiosqlite.Connection
    """The reader connection (the store opens it)."""
    last_committed_id: int
    """The id of the newest committed event (the write path keeps it)."""

    async def load_sessions(self) -> list[Session]:
        rows = await self._fetch("SELECT doc FROM sessions ORDER BY rowid")
        # Stored values are taken as they are: a rule added later (a stricter secret format)
        # must not stop a start; what cannot be used is refused where it is used.
        return [Session.model_validate_json(row[0], context={"stored": True}) for row in rows]

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
        where = ["id > ?"]
        params: list[Any] = [after_id]
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if types is not None:
            wanted = [t.value for t in types]
            where.append(f"type IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        params.append(limit)
        rows = await self._fetch(
            f"SELECT id, type, session_id, owner, ts, payload FROM events WHERE {' AND '.join(where)}"
            " ORDER BY id LIMIT ?",
            params,
        )
        return [_event(row) for row in rows]

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """A session's latest events, oldest first."""
        rows = await self._fetch(
            "SELECT id, type, session_id, owner, ts, payload FROM events WHERE session_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (session_id, limit),
        )
        return [_event(row) for row in reversed(rows)]

    async def max_event_id(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(rows[0][0])

    async def oldest_event_id(self) -> int:
        """The id of the oldest event the log still keeps (retention prunes older ones); one
        past the newest if it keeps none."""
        rows = await self._fetch("SELECT MIN(id) FROM events")
        oldest = rows[0][0]
        return int(oldest) if oldest is not None else self.last_committed_id + 1

    async def count_events(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM events")
        return int(rows[0][0])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the reader connection, for modules that own their own tables."""
        return await self._fetch(sql, params)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._r.execute_fetchall(sql, params))
