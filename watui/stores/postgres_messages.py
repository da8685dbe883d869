"""The PostgreSQL store's messages: a session's stored chat messages, looking one up by
WhatsApp's id, and moving a sent message's status forward.

The writer inserts them (with U+FFFD for each NUL, see :mod:`watui.stores.postgres_writer`)
in the transaction of the events that carry them, and deletes them with their session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from watui.models import (
    OUTGOING_PROGRESS,
    Message,
    MessageDirection,
    MessageStats,
    MessageStatus,
    NewEvent,
    Session,
    stored_message_fields,
)
from watui.stores.group_commit import WriteResult
from watui.stores.postgres_writer import MESSAGE_COLUMNS, PostgresWriter
from watui.stores.stats import assemble, day_keys


def _message(r: Any) -> Message:
    return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3],
                   message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=r[8],
                   **stored_message_fields(r[9], r[4], r[10]))


class PostgresMessages(PostgresWriter):
    """The messages table's reads, and the status update that writes through the writer."""

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Message], int]:
        """A session's messages, newest first, and how many there are in all."""
        rows = await self.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            (session_id, limit, offset),
        )
        total = await self._pool.fetchval("SELECT COUNT(*) FROM messages WHERE session_id = $1", session_id)
        return [_message(r) for r in rows], int(total)

    async def message_stats(self, session_ids: Sequence[str] | None, *, today: date, days: int) -> MessageStats:
        """Statistics of the messages of ``session_ids`` (``None``: every session), ``by_day``
        over the ``days`` UTC days up to ``today`` (:mod:`watui.stores.stats`)."""
        where = ""
        params: tuple[Any, ...] = ()
        if session_ids is not None:
            if len(session_ids) == 1:
                where, params = "session_id = $1", (session_ids[0],)
            else:
                where, params = "session_id = ANY($1::text[])", (list(session_ids),)
        first = date.fromisoformat(day_keys(today, days)[0])
        totals = await self.fetchall(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE direction = 'in' AND status <> 'failed'),"
            " COUNT(*) FILTER (WHERE status = 'failed'), COUNT(*) FILTER (WHERE status = 'pending'), MAX(ts)"
            f" FROM messages{' WHERE ' + where if where else ''}", params,
        )
        by_day = await self.fetchall(
            "SELECT (ts AT TIME ZONE 'UTC')::date AS day,"
            " COUNT(*) FILTER (WHERE direction = 'out' AND status NOT IN ('failed', 'pending')),"
            " COUNT(*) FILTER (WHERE direction = 'in' AND status <> 'failed')"
            f" FROM messages WHERE {where + ' AND ' if where else ''}ts >= ${len(params) + 1} GROUP BY day",
            (*params, datetime.combine(first, time(), UTC)),
        )
        by_type = await self.fetchall(
            f"SELECT type, COUNT(*) FROM messages{' WHERE ' + where if where else ''} GROUP BY type", params,
        )
        total, received, failed, pending, last = totals[0]
        return assemble(
            int(total), int(received), int(failed), [(r[0].isoformat(), int(r[1]), int(r[2])) for r in by_day],
            last, today=today, days=days, by_type=[(r[0], int(r[1])) for r in by_type], pending=int(pending),
        )

    async def get_message(self, session_id: str, id: int) -> Message | None:
        """The session's message with watui's id ``id``, if stored."""
        rows = await self.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND id = $2", (session_id, id),
        )
        return _message(rows[0]) if rows else None

    async def find_message(self, session_id: str, message_id: str) -> Message | None:
        """The session's newest message with WhatsApp's id ``message_id``, if stored."""
        rows = await self.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND message_id = $2"
            " ORDER BY id DESC LIMIT 1",
            (session_id, message_id),
        )
        return _message(rows[0]) if rows else None

    async def update_message_status(
        self,
        session_id: str,
        message_id: str,
        status: MessageStatus,
        *,
        events: Sequence[NewEvent] = (),
    ) -> WriteResult:
        """Move a sent message's status forward, never backwards (the guard is in the UPDATE)."""
        earlier = [s.value for s in OUTGOING_PROGRESS[: OUTGOING_PROGRESS.index(status)]]
        return await self.write(
            events=events,
            statements=[(
                "UPDATE messages SET status = $1 WHERE session_id = $2 AND message_id = $3"
                " AND direction = 'out' AND status = ANY($4::text[])",
                (status.value, session_id, message_id, earlier),
            )],
        )

    async def pending_messages(self, session_id: str) -> list[Message]:
        """The session's sends still waiting in its pacing queue, oldest first."""
        rows = await self.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND status = 'pending' ORDER BY id",
            (session_id,),
        )
        return [_message(r) for r in rows]

    async def pending_sessions(self) -> list[str]:
        """The sessions that have a send waiting in their pacing queue."""
        rows = await self.fetchall("SELECT DISTINCT session_id FROM messages WHERE status = 'pending'", ())
        return [r[0] for r in rows]

    async def settle_message(
        self, session_id: str, id: int, *, status: MessageStatus, message_id: str | None,
        error: str | None, timestamp: datetime, keep_body: bool, events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
    ) -> WriteResult:
        """A queued send that went or failed (see the SQLite store's): the row leaves
        ``pending`` once, takes the time it went, and loses its body without ``keep_body``."""
        return await self.write(
            events=events, sessions=sessions,
            statements=[(
                "UPDATE messages SET status = $1, message_id = $2, error = $3, ts = $4,"
                " text = CASE WHEN $5 THEN text ELSE '' END, details = CASE WHEN $5 THEN details END"
                " WHERE session_id = $6 AND id = $7 AND status = 'pending'",
                (status.value, message_id, error, timestamp, keep_body, session_id, id),
            )],
        )
