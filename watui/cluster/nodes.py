"""The nodes table: which nodes make up the cluster, where to reach them, how full they are.

Each node upserts its row when it starts (:meth:`Nodes.register`), refreshes ``heartbeat_at``
and its session count as it renews its leases (:meth:`Nodes.heartbeat`), and deletes the row
when it leaves cleanly. A node that died keeps its row, with a heartbeat that grows old:
readers list only nodes heard from recently (:meth:`Nodes.list`). Times are PostgreSQL's
``now()``, so nodes with different clocks agree.
"""

from __future__ import annotations

import builtins

import asyncpg

from watui.cluster.types import NodeInfo

_COLUMNS = "node_id, url, started_at, heartbeat_at, sessions, capacity"

_UPSERT = """
INSERT INTO nodes AS n (node_id, url, started_at, heartbeat_at, capacity, sessions)
VALUES ($1, $2, now(), now(), $3, $4)
ON CONFLICT (node_id) DO UPDATE
SET url = EXCLUDED.url, heartbeat_at = now(), capacity = EXCLUDED.capacity,
    sessions = EXCLUDED.sessions{restart}
"""
REGISTER = _UPSERT.format(restart=", started_at = now()")
"""Join (or rejoin under the same id): the row as new, started now."""
HEARTBEAT = _UPSERT.format(restart="")
"""Alive, running this many sessions. An upsert, so a heartbeat also brings back a row that a
leave racing it (or a person) deleted, keeping ``started_at`` when the row is there."""


class Nodes:
    """This node's row in ``nodes``, and reads of everyone's."""

    def __init__(self, pool: asyncpg.Pool, node_id: str, url: str, capacity: int) -> None:
        if not node_id:
            raise ValueError("node_id must not be blank")
        self.pool = pool
        self.node_id = node_id
        self.url = url
        self.capacity = capacity

    async def register(self) -> None:
        """Join the cluster: (re)write this node's row, started now, running nothing yet."""
        await self.pool.execute(REGISTER, self.node_id, self.url, self.capacity, 0)

    async def heartbeat(self, sessions: int) -> None:
        """Say this node is alive and runs ``sessions`` sessions."""
        await self.pool.execute(HEARTBEAT, self.node_id, self.url, self.capacity, sessions)

    async def leave(self) -> None:
        """Leave the cluster cleanly (after handing the sessions over): delete the row."""
        await self.pool.execute("DELETE FROM nodes WHERE node_id = $1", self.node_id)

    async def list(self, *, within: float) -> builtins.list[NodeInfo]:
        """The nodes that heartbeated in the last ``within`` seconds, oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM nodes WHERE heartbeat_at > now() - $1 * interval '1 second'"
            " ORDER BY started_at, node_id",
            within)
        return [NodeInfo(node_id=r[0], url=r[1], started_at=r[2], heartbeat_at=r[3], sessions=r[4],
                         capacity=r[5]) for r in rows]

    async def url_of(self, node_id: str) -> str | None:
        """Where ``node_id`` answers, if it has a row."""
        url = await self.pool.fetchval("SELECT url FROM nodes WHERE node_id = $1", node_id)
        return str(url) if url is not None else None
