"""The PostgreSQL store's fencing (cluster mode): which writes a node may still make, checked
against the ``leases`` rows in the transaction that makes them.

With :attr:`PostgresStore.fencing <watui.stores.postgres_writer.PostgresWriter.fencing>` set,
each write transaction first locks the lease rows of the sessions it touches (``FOR SHARE``)
and refuses, alone and with :class:`~watui.errors.LeaseLost`, a write for a session that
another node has claimed since (see :func:`may_write` and docs/cluster.md, "Leases and
fencing"). The leases themselves are claimed and renewed by :mod:`watui.cluster.leases`.
"""

from __future__ import annotations

import logging
from typing import Protocol

import asyncpg

from watui.stores.group_commit import QueuedWrite

# The store's records keep one logger name whatever module they come from.
log = logging.getLogger("watui.stores.postgres")


class Fence(Protocol):
    """What the store asks before a write in cluster mode (``watui.cluster.leases.Leases`` is
    one): which node and which process of it (instance) this is, and the fencing token it
    holds for a session, if any."""

    node_id: str
    instance: str

    def token(self, session_id: str) -> int | None:
        """This node's fencing token for ``session_id``; None when it holds no lease on it."""
        ...


FENCE_ROWS = (
    "SELECT session_id, node_id, instance, token, expires_at > now() FROM leases"
    " WHERE session_id = ANY($1::text[]) ORDER BY session_id FOR SHARE"
)
"""The lease rows of the sessions a write transaction touches, locked until it ends: a claim
(which updates the row) waits for the write to commit, so no claim slips in between the check
and the commit. The locks are shared, so writers on several nodes never wait for each other."""


def touched(write: QueuedWrite) -> set[str]:
    """The sessions a write changes (its extra ``statements`` are SQL the store cannot read)."""
    sessions = {e.session_id for e in write.events}
    sessions.update(m.session_id for m in write.messages)
    sessions.update(s.id for s in write.sessions)
    sessions.update(write.deleted)
    return sessions


def may_write(fence: Fence, session_id: str, lease: tuple[str, str, int, bool] | None) -> bool:
    """The fencing rule for one session, given its lease row ``(node_id, instance, token, live)``.

    A process holding token T may write only while the row still names its node and instance
    with T (expired but not claimed by anyone else is fine: nobody else wrote since). A process
    holding no token may write only when no other node or instance holds a live lease (it
    creates, or changes a session nobody runs)."""
    mine = fence.token(session_id)
    here = lease is not None and lease[0] == fence.node_id and lease[1] == fence.instance
    if mine is not None:
        return lease is not None and here and lease[2] == mine
    return lease is None or not lease[3] or here


async def fenced_out(conn: asyncpg.Connection, fence: Fence, batch: list[QueuedWrite]) -> dict[int, str]:
    """The writes of ``batch`` that this node may not make (index -> the first session it
    lost), checked against the lease rows locked ``FOR SHARE`` in the caller's transaction."""
    touched_by = [touched(write) for write in batch]
    session_ids = sorted(set().union(*touched_by))
    if not session_ids:
        return {}
    rows = await conn.fetch(FENCE_ROWS, session_ids)
    leases = {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}
    lost = {s for s in session_ids if not may_write(fence, s, leases.get(s))}
    if lost:
        log.warning("refusing writes for sessions this node no longer holds: %s", sorted(lost))
    return {i: min(sessions & lost) for i, sessions in enumerate(touched_by) if sessions & lost}
