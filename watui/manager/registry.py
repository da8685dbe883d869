"""Who exists and who runs: sessions by id, names per owner, per-session locks, active slots.

Memory only: the journal writes ``sessions`` through the store, the rest is derived or
transient. Names and slots are checked and claimed synchronously (no await in between), so
two concurrent creates or starts cannot both pass.

**Names** are unique per owner as :func:`watui.models.name_key` compares them (after Unicode
NFKC normalisation and case folding: ``Shop``, ``shop`` and ``ｓｈｏｐ`` are one name). A
database written before names were compared this way may hold sessions whose names are now
the same. Start-up does not fail for them, and nothing is renamed: each keeps its name and
works as before. The first of them (in creation order) holds the name; the others are logged
once at start-up, and a create or rename to that name is ``409 CONFLICT`` while any of them
has it (a rename of one of the others must pick a name no session has). When the holder is
deleted or renamed, the name passes to the next of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from watui.errors import Conflict, SessionLimitReached, SessionNotFound
from watui.models import Caller, Session, name_key

log = logging.getLogger(__name__)

NameKey = tuple[str, str]
"""(owner, :func:`~watui.models.name_key` of the name)."""


def _key(owner: str, name: str) -> NameKey:
    return owner, name_key(name)


class Registry:
    def __init__(self, max_active_per_owner: int) -> None:
        self.max_active_per_owner = max_active_per_owner
        self.sessions: dict[str, Session] = {}
        """Every session's current snapshot, in creation order."""
        self.names: dict[NameKey, str] = {}
        """(owner, name key) -> the id of the session holding the name: names are unique per
        owner (as :func:`~watui.models.name_key` compares them), checked in O(1)."""
        self.shared: set[NameKey] = set()
        """Names that more than one session has: an old database's (see the module doc)."""
        self.locks: dict[str, asyncio.Lock] = {}
        self.active: dict[str, set[str]] = {}
        """owner -> ids of the sessions that run (or are reserved to run) for that owner."""

    def load(self, sessions: Iterable[Session]) -> None:
        for session in sessions:
            self.sessions[session.id] = session
            self._hold(session)
        for owner, key in sorted(self.shared):
            same = [s for s in self.sessions.values() if s.owner == owner and name_key(s.name) == key]
            log.warning(
                "owner %r has %d sessions whose names are one name (compared ignoring case and"
                " Unicode forms): %s; they keep them, %s holds the name",
                owner, len(same), ", ".join(f"{s.id} ({s.name!r})" for s in same), self.names[(owner, key)],
            )

    def mirror(self, session: Session) -> None:
        """Cluster mode: take the snapshot another node wrote (its name comes along)."""
        old = self.sessions.get(session.id)
        if old is not None and name_key(old.name) != name_key(session.name):
            self.release_name(old)
        self.sessions[session.id] = session
        self._hold(session)

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

    def _hold(self, session: Session) -> None:
        """``session`` holds its name, unless another session that exists already does (then
        the name is :attr:`shared`)."""
        key = _key(session.owner, session.name)
        holder = self.names.get(key)
        if holder is None or holder == session.id or holder not in self.sessions:
            self.names[key] = session.id
        else:
            self.shared.add(key)

    def claim_name(self, owner: str, name: str, session_id: str) -> None:
        """Reserve ``name`` for ``session_id`` (synchronously, so two creates cannot both pass)."""
        key = _key(owner, name)
        other = self.names.get(key)
        if other is not None and other != session_id:
            holder = self.sessions.get(other)
            taken = holder.name if holder is not None else name  # as that session shows it
            raise Conflict(f"A session named {taken!r} already exists", details={"session_id": other})
        self.names[key] = session_id

    def release_name(self, session: Session) -> None:
        key = _key(session.owner, session.name)
        if self.names.get(key) != session.id:
            return
        del self.names[key]
        if key in self.shared:  # another session has the name too: it holds it now
            heirs = [s.id for s in self.sessions.values()
                     if s.id != session.id and s.owner == session.owner and name_key(s.name) == key[1]]
            if heirs:
                self.names[key] = heirs[0]
            if len(heirs) <= 1:
                self.shared.discard(key)

    def rename(self, session: Session, name: str) -> None:
        """``session`` takes ``name`` and gives up its own (``409 CONFLICT`` if another
        session has it). The same name in another form (``shop`` to ``Shop``) stays its own."""
        self.claim_name(session.owner, name, session.id)
        if name_key(name) != name_key(session.name):
            self.release_name(session)

    def undo_rename(self, session: Session, name: str) -> None:
        """A :meth:`rename` of ``session`` to ``name`` that was not saved: its old name back."""
        if name_key(name) != name_key(session.name):
            self.release_name(session.model_copy(update={"name": name}))
        self._hold(session)

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
