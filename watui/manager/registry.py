"""Who exists and who runs: sessions by id, names per owner, per-session locks, active slots.

Memory only: the journal writes ``sessions`` through the store, the rest is derived or
transient. Names and slots are checked and claimed synchronously (no await in between), so
two concurrent creates or starts cannot both pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from watui.errors import Conflict, SessionLimitReached, SessionNotFound
from watui.models import Caller, Session


class Registry:
    def __init__(self, max_active_per_owner: int) -> None:
        self.max_active_per_owner = max_active_per_owner
        self.sessions: dict[str, Session] = {}
        """Every session's current snapshot, in creation order."""
        self.names: dict[tuple[str, str], str] = {}
        """(owner, name) -> session id: names are unique per owner, checked in O(1)."""
        self.locks: dict[str, asyncio.Lock] = {}
        self.active: dict[str, set[str]] = {}
        """owner -> ids of the sessions that run (or are reserved to run) for that owner."""

    def load(self, sessions: Iterable[Session]) -> None:
        for session in sessions:
            self.sessions[session.id] = session
            self.names[(session.owner, session.name)] = session.id

    def mirror(self, session: Session) -> None:
        """Cluster mode: take the snapshot another node wrote (its name comes along)."""
        old = self.sessions.get(session.id)
        if old is not None and old.name != session.name:
            self.release_name(old)
        self.sessions[session.id] = session
        self.names[(session.owner, session.name)] = session.id

    def forget(self, session_id: str) -> None:
        """Cluster mode: another node deleted the session."""
        old = self.sessions.pop(session_id, None)
        if old is not None:
            self.release_name(old)

    def lock(self, session_id: str) -> asyncio.Lock:
        """The lock every change of one session takes, so its transitions come one at a time."""
        lock = self.locks.get(session_id)
        if lock is None:
            lock = self.locks[session_id] = asyncio.Lock()
        return lock

    def forget_lock(self, session_id: str) -> None:
        self.locks.pop(session_id, None)

    def visible(self, caller: Caller, session_id: str) -> Session:
        """The session if ``caller`` may see it; another owner's session does not exist for them."""
        session = self.sessions.get(session_id)
        if session is None or not (caller.admin or session.owner == caller.owner):
            raise SessionNotFound(session_id)
        return session

    # ---------------------------------------------------------------- names

    def claim_name(self, owner: str, name: str, session_id: str) -> None:
        """Reserve ``name`` for ``session_id`` (synchronously, so two creates cannot both pass)."""
        other = self.names.get((owner, name))
        if other is not None and other != session_id:
            raise Conflict(f"A session named {name!r} already exists", details={"session_id": other})
        self.names[(owner, name)] = session_id

    def release_name(self, session: Session) -> None:
        if self.names.get((session.owner, session.name)) == session.id:
            del self.names[(session.owner, session.name)]

    # ---------------------------------------------------------------- active slots

    def active_count(self, owner: str) -> int:
        return len(self.active.get(owner, ()))

    def check_limit(self, session: Session, caller: Caller | None) -> None:
        """Refuse a start that would put the owner over the limit (admins and restores pass)."""
        if caller is None or caller.admin or session.id in self.active.get(session.owner, ()):
            return  # already running, or its slot was reserved by ``create``
        limit = self.max_active_per_owner
        if self.active_count(session.owner) >= limit:
            raise SessionLimitReached(
                f"Owner {session.owner!r} already has {limit} active sessions (the limit); stop one first",
                details={"owner": session.owner, "limit": limit},
            )

    def take_slot(self, owner: str, session_id: str) -> None:
        self.active.setdefault(owner, set()).add(session_id)

    def release_slot(self, owner: str, session_id: str) -> None:
        """The session no longer counts against its owner's active sessions."""
        owners = self.active.get(owner)
        if owners is not None:
            owners.discard(session_id)
            if not owners:
                del self.active[owner]
