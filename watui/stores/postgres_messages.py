"""The PostgreSQL store's messages: a session's stored chat messages, looking one up by
WhatsApp's id, and moving a sent message's status forward.

The writer inserts them (with U+FFFD for each NUL, see :mod:`watui.stores.postgres_writer`)
in the transaction of the events that carry them, and deletes them with their session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from watui.models import OUTGOING_PROGRESS, Message, MessageDirection, MessageStatus, NewEvent
from watui.stores.group_commit import WriteResult
from watui.stores.postgres_writer import MESSAGE_COLUMNS, PostgresWriter


def _message(r: Any) -> Message:
    return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3], text=r[4],
                   message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=r[8])


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
