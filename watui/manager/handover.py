"""Cluster mode: sessions changing hands between nodes, as the manager sees it.

- ``take_over``: this node just claimed a session's lease (its node died, or handed it over
  when it shut down): park it if it was left running, then resume it as a restart would;
- ``drop``: another node holds the session now (this one was paused or cut off past its
  lease): stop running it here, writing nothing;
- ``mirror``: snapshots the other nodes wrote, so this node's view of the cluster (lists,
  the console, webhooks' settings) stays current.

The cluster node (watui/cluster/node.py) decides *when*; this module knows what it does to
the registry, the runtimes and the journal.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from watui.machine import RUNNING, Status, Trigger
from watui.manager.journal import cleared_link_state
from watui.manager.restore import JITTER
from watui.models import Session

if TYPE_CHECKING:
    from watui.manager.session_manager import SessionManager
    from watui.stores.postgres import PostgresStore


FULL_SPREAD = 100
"""Sessions taken over at once whose connects are spread over the restore's whole ``JITTER``;
fewer are spread over less (five reconnect within 12.5 ms, not 250): the spread is there to
keep a large takeover from dialling all at once, and a small one has no crowd to spread."""


class Handover:
    def __init__(self, manager: SessionManager, store: PostgresStore) -> None:
        self.manager = manager
        self.store = store
        self.registry = manager.registry
        self.journal = manager.journal
        self.supervisor = manager.supervisor

    async def take_over(self, session_id: str, batch: int = 1) -> None:
        """Park the session if its node died while it ran (reason ``node_lost``), then resume
        it; a session with nothing to resume gives its lease back. ``batch``: how many this
        node took over at once (their connects are spread, see :data:`FULL_SPREAD`)."""
        await self.reload(session_id)
        async with self.registry.lock(session_id):
            session = self.registry.sessions.get(session_id)
            resumed = False
            if session is not None and session_id not in self.supervisor.runtimes:
                if session.status in RUNNING:
                    await self.journal.apply(
                        session, Trigger.SHUTDOWN, reason="node_lost", changes=cleared_link_state(),
                    )
                resumed = await self.manager._restore_locked(
                    session_id, delay=random.uniform(0, JITTER * min(1.0, batch / FULL_SPREAD)), on_settled=None
                )
            if not resumed and session_id not in self.supervisor.runtimes:
                await self.supervisor.placement.release(session_id)  # nothing to run here

    async def strand(self, session_id: str) -> None:
        """Say that a session whose node died runs nowhere (status ``disconnected``, reason
        ``node_lost``, no node): no node has room for it. It stays wanted, and the first node
        with room takes it over."""
        await self.reload(session_id)
        try:
            async with self.registry.lock(session_id):
                session = self.registry.sessions.get(session_id)
                if session is not None and session_id not in self.supervisor.runtimes \
                        and session.status in RUNNING:
                    await self.journal.apply(
                        session, Trigger.SHUTDOWN, reason="node_lost", changes=cleared_link_state(),
                    )
        finally:
            if session_id not in self.supervisor.runtimes:
                await self.supervisor.placement.release(session_id)

    async def hand_off(self, session_id: str) -> bool:
        """Park a session that runs here (reason ``rebalance``) and let its lease go: a node
        with more room takes it over and resumes it, as after a drain."""
        async with self.registry.lock(session_id):
            runtime = self.supervisor.runtimes.get(session_id)
            session = self.registry.sessions.get(session_id)
            if runtime is None or session is None or session.status is not Status.CONNECTED:
                return False  # only settled sessions move: one pairing stays with its codes
            try:
                await self.journal.apply(session, Trigger.SHUTDOWN, reason="rebalance",
                                         changes=cleared_link_state())
            finally:
                await self.supervisor.teardown(runtime)
        return True

    async def drop(self, session_id: str) -> None:
        """Stop running the session here without writing anything (the store would refuse
        it), then take its current snapshot from the store."""
        async with self.registry.lock(session_id):
            self.supervisor.placement.forget(session_id)
            runtime = self.supervisor.runtimes.get(session_id)
            if runtime is not None:
                await self.supervisor.teardown(runtime)
        await self.reload(session_id)

    async def reload(self, session_id: str) -> Session | None:
        """The session as the store has it, put in the registry (None: it was deleted)."""
        sessions, deleted = await self.store.load_sessions_by_id([session_id])
        if deleted:
            self.mirror([], deleted)
            return None
        session = sessions[0]  # the store's word, newer or not than what memory holds
        self.registry.mirror(session)
        self.journal.notify(session)
        return session

    def mirror(self, sessions: list[Session], deleted: list[str]) -> None:
        """Snapshots other nodes wrote (the sessions this node runs, it knows best)."""
        runtimes = self.supervisor.runtimes
        for session in sessions:
            if session.id in runtimes:
                continue
            current = self.registry.sessions.get(session.id)
            if current is not None and current.updated_at > session.updated_at:
                continue  # an older snapshot overtaken by a newer one
            self.registry.mirror(session)
            self.journal.notify(session)
        for session_id in deleted:
            if session_id not in runtimes:
                self.registry.forget(session_id)
