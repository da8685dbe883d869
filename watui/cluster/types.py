"""What the cluster's parts hand each other: a node as the nodes table describes it, the
question the router asks ("which other node runs this session?"), and what a node asks of the
manager when a session changes hands (the manager passes it in: the cluster never imports the
manager)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One row of ``GET /v1/cluster``'s ``nodes``."""

    node_id: str
    url: str
    started_at: datetime
    heartbeat_at: datetime
    sessions: int
    """Sessions the node runs (leases it holds), as of its last heartbeat."""
    capacity: int
    instance: str | None = None
    """The process that runs the node id now (a new one each start)."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The node that holds a live lease on a session."""

    node_id: str
    url: str


class Takeover(Protocol):
    """What the node asks of the sessions' owner (the manager's
    :class:`~watui.manager.handover.Handover`) when a session changes hands."""

    async def take_over(self, session_id: str, batch: int = 1) -> None:
        """This node just claimed the session's lease: run it here (one of ``batch`` claimed
        at once)."""
        ...

    async def drop(self, session_id: str) -> None:
        """Another node holds the session now: stop running it here, writing nothing."""
        ...

    async def strand(self, session_id: str) -> None:
        """This node claimed the lease of a session whose node died, only to say it runs
        nowhere (no node has room): park it (``node_lost``, no node) and give the lease back,
        so it waits for the first node with room."""
        ...

    async def hand_off(self, session_id: str) -> bool:
        """Rebalancing: park a session that runs here and give its lease up, for a node with
        more room to take it over (as a drain does). False if it does not run here (now)."""
        ...


class Locator(Protocol):
    """What the router and ``GET /v1/cluster`` need from the cluster."""

    node_id: str
    """This node."""
    lease_ttl: float

    @property
    def secret(self) -> str:
        """The cluster's secret: node-to-node calls are signed with it
        (:mod:`watui.cluster.identity`)."""
        ...

    async def locate(self, session_id: str) -> Holder | None:
        """The *other* node holding a live lease on ``session_id``; None when this node holds
        it, or nobody does (then this node answers the call itself)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every node that has heartbeated within a few lease TTLs, oldest first."""
        ...

    async def runs_nowhere(self, session_id: str) -> bool:
        """The session should be running but no node runs it: its node died and no node has
        taken it over yet (or none has room)."""
        ...

    async def room_elsewhere(self) -> Holder | None:
        """When this node is at its capacity: the live node with the most room, for a create
        or a start to go to (None: this node has room, or no node has)."""
        ...
