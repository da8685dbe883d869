"""The nodes table: which nodes make up the cluster, where to reach them, how full they are,
and which process (*instance*) of each node is the live one.

A node id names a node across restarts; each process that runs it is an **instance** with a
random id of its own (:func:`new_instance`). A process joins (:meth:`Nodes.join`) by taking its
node id's row for its instance, which it may do only when the row is missing, already its own,
or its heartbeat is *stale* (no heartbeat for :data:`STALE_AFTER` seconds: the instance that
wrote it is dead). When another instance's heartbeat is fresh, the process watches it: if it
moves on, that instance is alive and the process refuses to run (:class:`NodeIdInUse`, which
``watui serve`` turns into exit status 2); if it goes stale, the process takes the row over.

The live instance refreshes ``heartbeat_at`` and its session count every
:data:`HEARTBEAT_INTERVAL` (:meth:`Nodes.heartbeat`, matched on the instance: a heartbeat that
finds another instance in the row means this process was superseded), and deletes its row when
it leaves cleanly. A node that died keeps its row, with a heartbeat that grows old: readers
list only nodes heard from recently (:meth:`Nodes.list`). Times are PostgreSQL's ``now()``, so
nodes with different clocks agree.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import secrets
import socket
import time
from dataclasses import dataclass

import asyncpg

from watui.cluster.types import NodeInfo

HEARTBEAT_INTERVAL = 1.0
"""Seconds between two heartbeats of a live instance."""
STALE_AFTER = 3 * HEARTBEAT_INTERVAL
"""A heartbeat older than this is stale: its instance missed two heartbeats in a row (a live
one is at most one interval and a slow statement behind), so it is taken for dead, and a
restart of its node takes its sessions over. Shorter than any lease TTL worth having, which is
the point: a node restarted after a crash does not wait out its own old leases."""
WATCH_EVERY = 0.2
"""Seconds between two looks at another instance's heartbeat while deciding if it is alive."""

_COLUMNS = "node_id, url, started_at, heartbeat_at, sessions, capacity, instance"

HEARTBEAT = """
INSERT INTO nodes AS n (node_id, instance, url, host, pid, started_at, heartbeat_at, capacity, sessions)
VALUES ($1, $2, $3, $4, $5, now(), now(), $6, $7)
ON CONFLICT (node_id) DO UPDATE
SET url = EXCLUDED.url, heartbeat_at = now(), capacity = EXCLUDED.capacity, sessions = EXCLUDED.sessions
WHERE n.instance = EXCLUDED.instance
RETURNING 1
"""
"""Alive, running this many sessions: only while the row names this instance. An upsert, so a
heartbeat also brings back a row that a leave racing it (or a person) deleted; no row back
means another instance of this node id holds the row now."""

TAKE = """
INSERT INTO nodes AS n (node_id, instance, url, host, pid, started_at, heartbeat_at, capacity, sessions)
VALUES ($1, $2, $3, $4, $5, now(), now(), $6, 0)
ON CONFLICT (node_id) DO UPDATE
SET instance = EXCLUDED.instance, url = EXCLUDED.url, host = EXCLUDED.host, pid = EXCLUDED.pid,
    started_at = now(), heartbeat_at = now(), capacity = EXCLUDED.capacity, sessions = 0
"""


def new_instance() -> str:
    """A random id for this process (one per ``watui serve`` run)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Incumbent:
    """Another instance's row for this node id, as read while joining."""

    instance: str
    url: str
    host: str
    pid: int | None
    heartbeat_at: object
    age: float
    """Seconds since its last heartbeat (PostgreSQL's clock)."""


class NodeIdInUse(RuntimeError):
    """Another live process runs this node id (its heartbeat moved on while this one waited)."""

    def __init__(self, node_id: str, other: Incumbent) -> None:
        where = [f"url {other.url}" if other.url else "", f"host {other.host}" if other.host else "",
                 f"pid {other.pid}" if other.pid is not None else ""]
        super().__init__(
            f"node id {node_id!r} is in use by another live process: instance {other.instance}"
            f" ({', '.join(w for w in where if w) or 'location unknown'}; heartbeat {other.age:.1f} s ago);"
            " stop it first or give this process another --node-id"
        )
        self.node_id = node_id
        self.other = other


class Nodes:
    """This node's row in ``nodes``, and reads of everyone's."""

    def __init__(
        self, pool: asyncpg.Pool, node_id: str, url: str, capacity: int, *, instance: str | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be blank")
        self.pool = pool
        self.node_id = node_id
        self.url = url
        self.capacity = capacity
        self.instance = instance or new_instance()
        self.host = socket.gethostname()
        self.pid = os.getpid()

    async def take(self) -> Incumbent | None:
        """Take this node id's row for this instance unless another instance's heartbeat is
        fresh; returns that instance (nothing written) or None (the row is this instance's)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT instance, url, host, pid, heartbeat_at,"
                " extract(epoch FROM now() - heartbeat_at)::float8 FROM nodes WHERE node_id = $1 FOR UPDATE",
                self.node_id)
            if row is not None and row[0] != self.instance and row[5] < STALE_AFTER:
                return Incumbent(instance=row[0], url=row[1], host=row[2], pid=row[3], heartbeat_at=row[4],
                                 age=float(row[5]))
            await conn.execute(TAKE, self.node_id, self.instance, self.url, self.host, self.pid, self.capacity)
        return None

    async def join(self) -> None:
        """Join the cluster as this node id's instance. Waits (at most :data:`STALE_AFTER`)
        while another instance's heartbeat is fresh: if it moves on, that instance is alive
        and this raises :class:`NodeIdInUse`; if it goes stale, this instance takes over."""
        first: Incumbent | None = None
        deadline = time.monotonic() + 2 * STALE_AFTER  # a clock that stands still: give up
        while True:
            other = await self.take()
            if other is None:
                return
            if first is None or other.instance != first.instance:
                first = other
            elif other.heartbeat_at != first.heartbeat_at or time.monotonic() > deadline:
                raise NodeIdInUse(self.node_id, other)
            await asyncio.sleep(WATCH_EVERY)

    async def register(self) -> None:
        """Join without waiting: raises :class:`NodeIdInUse` at once when another instance's
        heartbeat is fresh."""
        other = await self.take()
        if other is not None:
            raise NodeIdInUse(self.node_id, other)

    async def heartbeat(self, sessions: int) -> bool:
        """Say this instance is alive and runs ``sessions`` sessions. False: another instance
        of this node id holds the row (this process was superseded)."""
        row = await self.pool.fetchval(
            HEARTBEAT, self.node_id, self.instance, self.url, self.host, self.pid, self.capacity, sessions)
        return row is not None

    async def leave(self) -> None:
        """Leave the cluster cleanly (after handing the sessions over): delete the row, if it
        is still this instance's."""
        await self.pool.execute("DELETE FROM nodes WHERE node_id = $1 AND instance = $2", self.node_id,
                                self.instance)

    async def list(self, *, within: float) -> builtins.list[NodeInfo]:
        """The nodes that heartbeated in the last ``within`` seconds, oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM nodes WHERE heartbeat_at > now() - $1 * interval '1 second'"
            " ORDER BY started_at, node_id",
            within)
        return [NodeInfo(node_id=r[0], url=r[1], started_at=r[2], heartbeat_at=r[3], sessions=r[4],
                         capacity=r[5], instance=r[6]) for r in rows]

    async def url_of(self, node_id: str) -> str | None:
        """Where ``node_id`` answers, if it has a row."""
        url = await self.pool.fetchval("SELECT url FROM nodes WHERE node_id = $1", node_id)
        return str(url) if url is not None else None
