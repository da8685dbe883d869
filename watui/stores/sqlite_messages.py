"""The SQLite store's message log: a session's messages, finding one by WhatsApp's id, and a
sent message's status moving forward (:data:`watui.models.OUTGOING_PROGRESS`). New messages are written
with their events (``write(messages=...)``, :mod:`watui.stores.sqlite_pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from watui.models import OUTGOING_PROGRESS, Message, MessageDirection, MessageStatus, NewEvent
from watui.stores.group_commit import GroupCommitWriter, WriteResult
from watui.stores.sqlite_reads import SqliteReads, parse_ts


def _message(r: Any) -> Message:
    """A ``messages`` row (id, session_id, direction, chat, text, message_id, status, error, ts)
    as a Message."""
    return Message(id=r[0], session_id=r[1], direction=MessageDirection(r[2]), chat=r[3], text=r[4],
                   message_id=r[5], status=MessageStatus(r[6]), error=r[7], timestamp=parse_ts(r[8]))


class SqliteMessages(SqliteReads, GroupCommitWriter):
    """Messages, read on the reader connection and updated through the write queue."""

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> tuple[list[Message], int]:
        """A session's messages, newest first, and how many there are in all."""
        rows = await self._fetch(
            "SELECT id, session_id, direction, chat, text, message_id, status, error, ts FROM messages"
            " WHERE session_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (session_id, limit, offset),
        )
        total = await self._fetch(
            "SELECT COUNT(*) FROM messages WHERE session_id = ?", (session_id,)
        )
        return [_message(r) for r in rows], int(total[0][0])

    async def find_message(self, session_id: str, message_id: str) -> Message | None:
        """The session's newest message with WhatsApp's id ``message_id``, if stored."""
        rows = await self._fetch(
            "SELECT id, session_id, direction, chat, text, message_id, status, error, ts FROM messages"
            " WHERE session_id = ? AND message_id = ? ORDER BY id DESC LIMIT 1",
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
