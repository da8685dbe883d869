"""Where a session runs: this process alone, or one node of a cluster.

The commands ask the placement before a session's runtime is made (``acquire``) and tell it
when the runtime is gone (``release``). On one node there is nothing to ask: the registry's
per-owner limit, checked synchronously, is the whole story. In a cluster the placement takes
the session's lease (watui/cluster/leases.py): only the node holding it runs the session, the
per-owner limit is checked in the claim's transaction (across every node), and the lease's
fencing token guards every write the node makes for the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from watui.errors import NodeUnavailable
from watui.models import Caller, Session

if TYPE_CHECKING:
    from watui.cluster.leases import Leases


class Placement(Protocol):
    node_id: str | None
    """The node that runs this process's sessions (None on a single node)."""

    async def acquire(self, session: Session, caller: Caller | None) -> None:
        """Before ``session``'s runtime is made: raise to refuse (limit, held elsewhere)."""
        ...

    async def release(self, session_id: str) -> None:
        """After the session's runtime is gone."""
        ...

    def forget(self, session_id: str) -> None:
        """The session was lost to another node: drop it without writing anything."""
        ...

    def check(self, session_id: str) -> None:
        """Before anything the engine does for the session that cannot be taken back (a send,
        a pairing code, the phone's play): raise unless this node may act for it now."""
        ...


class LocalPlacement:
    """One process: the registry's limit check (made before) is all there is."""

    node_id: str | None = None

    async def acquire(self, session: Session, caller: Caller | None) -> None:
        return None

    async def release(self, session_id: str) -> None:
        return None

    def forget(self, session_id: str) -> None:
        return None

    def check(self, session_id: str) -> None:
        return None


class LeasePlacement:
    """A cluster node: a session runs here only under this node's lease on it."""

    def __init__(self, leases: Leases, max_active_per_owner: int, capacity: int) -> None:
        self.leases = leases
        self.node_id: str | None = leases.node_id
        self.max_active_per_owner = max_active_per_owner
        self.capacity = capacity

    async def acquire(self, session: Session, caller: Caller | None) -> None:
        if session.id not in self.leases.tokens and len(self.leases.tokens) >= self.capacity:
            raise NodeUnavailable(
                f"Node {self.node_id!r} already runs {self.capacity} sessions (its capacity);"
                " start this one through another node",
                details={"node_id": self.node_id, "capacity": self.capacity},
            )
        # Admins and the node's own takeovers and restores (caller None) pass the limit.
        limit = None if caller is None or caller.admin else self.max_active_per_owner
        await self.leases.claim(session.id, session.owner, limit=limit)

    async def release(self, session_id: str) -> None:
        if session_id in self.leases.tokens:
            await self.leases.release(session_id)

    def forget(self, session_id: str) -> None:
        self.leases.tokens.pop(session_id, None)
        self.leases.valid_until.pop(session_id, None)

    def check(self, session_id: str) -> None:
        """Refuse (``503 NODE_UNAVAILABLE``) while this node does not know its lease to hold:
        it woke from a pause past the lease's end, and until its next renewal another node may
        run the session. A send refused here never left; the caller retries."""
        if not self.leases.holds(session_id):
            raise NodeUnavailable(
                f"Node {self.node_id!r} cannot act for session {session_id!r} right now: its lease"
                " on it is not known to hold (the node was paused); nothing was done. Retry.",
                details={"session_id": session_id, "node_id": self.node_id},
            )
