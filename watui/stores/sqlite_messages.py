"""The SQLite store's message log: a session's messages, finding one by WhatsApp's id, and a
sent message's status moving forward (:data:`watui.models.OUTGOING_PROGRESS`). New messages are written
with their events (``write(messages=...)``, :mod:`watui.stores.sqlite_pipeline`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
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
from watui.stores.encoding import utc_text
from watui.stores.group_commit import GroupCommitWriter, WriteResult
from watui.stores.sqlite_reads import SqliteReads, parse_ts
from watui.stores.stats import assemble, day_keys

_COLUMNS = "id, session_id, direction, chat, text, message_id, status, error, ts, type, details"


def _message(r: Any) -> Message:
    """A ``messages`` row (:data:`_COLUMNS`) as a Message."""
    return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3],
                   message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=parse_ts(r[8]),
                   **stored_message_fields(r[9], r[4], r[10]))


class SqliteMessages(SqliteReads, GroupCommitWriter):
    """Messages, read on the reader connection and updated through the write queue."""

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Message], int]:
        """A session's messages, newest first, and how many there are in all."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (session_id, limit, offset),
        )
        total = await self._fetch(
            "SELECT COUNT(*) FROM messages WHERE session_id = ?", (session_id,)
        )
        return [_message(r) for r in rows], int(total[0][0])

    async def message_stats(self, session_ids: Sequence[str] | None, *, today: date, days: int) -> MessageStats:
        """Statistics of the messages of ``session_ids`` (``None``: every session), ``by_day``
        over the ``days`` UTC days up to ``today`` (:mod:`watui.stores.stats`)."""
        where = ""
        params: tuple[Any, ...] = ()
        if session_ids is not None:
            if len(session_ids) == 1:
                where, params = "session_id = ?", (session_ids[0],)
            else:
                where, params = "session_id IN (SELECT value FROM json_each(?))", (json.dumps(list(session_ids)),)
        since = day_keys(today, days)[0]
        totals = await self._fetch(
            "SELECT COUNT(*), SUM(direction = 'in' AND status != 'failed'), SUM(status = 'failed'),"
            " SUM(status = 'pending'), MAX(ts)"
            f" FROM messages{' WHERE ' + where if where else ''}", params,
        )
        by_day = await self._fetch(
            "SELECT substr(ts, 1, 10) AS day, SUM(direction = 'out' AND status NOT IN ('failed', 'pending')),"
            " SUM(direction = 'in' AND status != 'failed') FROM messages"
            f" WHERE {where + ' AND ' if where else ''}ts >= ? GROUP BY day",
            (*params, since),
        )
        by_type = await self._fetch(
            f"SELECT type, COUNT(*) FROM messages{' WHERE ' + where if where else ''} GROUP BY type", params,
        )
        total, received, failed, pending, last = totals[0]
        return assemble(
            int(total), int(received or 0), int(failed or 0), [(r[0], int(r[1]), int(r[2])) for r in by_day],
            parse_ts(last) if last else None, today=today, days=days,
            by_type=[(r[0], int(r[1])) for r in by_type], pending=int(pending or 0),
        )

    async def get_message(self, session_id: str, id: int) -> Message | None:
        """The session's message with watui's id ``id``, if stored."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE session_id = ? AND id = ?", (session_id, id),
        )
        return _message(rows[0]) if rows else None

    async def find_message(self, session_id: str, message_id: str) -> Message | None:
        """The session's newest message with WhatsApp's id ``message_id``, if stored."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE session_id = ? AND message_id = ? ORDER BY id DESC LIMIT 1",
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
        """Move a sent message's status forward (sent → delivered → read), with its events.

        Only outgoing messages move, and never backwards: a late ``delivered`` receipt leaves
        a ``read`` message as it is (the guard is in the UPDATE itself).
        """
        earlier = [s.value for s in OUTGOING_PROGRESS[: OUTGOING_PROGRESS.index(status)]]
        marks = ",".join("?" * len(earlier))
        return await self.write(
            events=events,
            statements=[(
                "UPDATE messages SET status = ? WHERE session_id = ? AND message_id = ?"
                f" AND direction = 'out' AND status IN ({marks})",
                (status.value, session_id, message_id, *earlier),
            )],
        )

    async def pending_messages(self, session_id: str) -> list[Message]:
        """The session's sends still waiting in its pacing queue, oldest first."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE session_id = ? AND status = 'pending' ORDER BY id",
            (session_id,),
        )
        return [_message(r) for r in rows]

    async def pending_sessions(self) -> list[str]:
        """The sessions that have a send waiting in their pacing queue."""
        rows = await self._fetch("SELECT DISTINCT session_id FROM messages WHERE status = 'pending'", ())
        return [r[0] for r in rows]

    async def settle_message(
        self, session_id: str, id: int, *, status: MessageStatus, message_id: str | None,
        error: str | None, timestamp: datetime, keep_body: bool, events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
    ) -> WriteResult:
        """A queued send that went (``sent``, with WhatsApp's ``message_id``) or failed: the
        row leaves ``pending`` once (the guard is in the UPDATE) and takes the time it went;
        without ``keep_body`` (``message_history`` off) its text and details are cleared."""
        return await self.write(
            events=events, sessions=sessions,
            statements=[(
                "UPDATE messages SET status = ?, message_id = ?, error = ?, ts = ?,"
                " text = CASE WHEN ? THEN text ELSE '' END, details = CASE WHEN ? THEN details END"
                " WHERE session_id = ? AND id = ? AND status = 'pending'",
                (status.value, message_id, error, utc_text(timestamp), keep_body, keep_body, session_id, id),
            )],
        )
