"""The only writer of sessions: apply a transition, persist it with its events, then publish.

Memory changes first so hooks that run while the transaction is assembled (the webhook
outbox) see the new snapshot; a write that fails puts the old snapshot back, so memory and
disk always agree. The store's commit feeds the bus; ``on_change`` callbacks see each
snapshot that was written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from watui.clock import Clock
from watui.machine import RUNNING, EventType, Status, Trigger, transition
from watui.manager.registry import Registry
from watui.media.storage import MediaStorage
from watui.models import NewEvent, NewMessage, Session
from watui.stores.base import StoreProtocol
from watui.stores.group_commit import WriteResult


def cleared_link_state() -> dict[str, Any]:
    """The changes that forget a QR code or pairing code once it can no longer be used."""
    return {"qr_expires_at": None, "qr_generation": 0, "pair_code": None, "pair_code_expires_at": None}


class Journal:
    def __init__(self, store: StoreProtocol, clock: Clock, registry: Registry) -> None:
        self.store = store
        self.clock = clock
        self.registry = registry
        self.on_change: list[Callable[[Session], None]] = []
        self.node_id: str | None = None
        """Cluster mode: this node, written into the snapshots of the sessions it runs."""
        self.media: MediaStorage | None = None
        """Where media messages' files are kept (set by the manager; None: not kept)."""

    async def apply(
        self,
        session: Session,
        trigger: Trigger,
        *,
        reason: str | None = None,
        changes: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        before: list[NewEvent] | None = None,
    ) -> Session:
        """Apply ``trigger``, persist the new snapshot with its events, then publish them.

        If the write fails, memory is left as it was and the error (``StoreUnavailable``)
        propagates. ``before``: events written first in the same transaction.
        """
        result = transition(session.status, trigger)
        now = self.clock.now()
        update: dict[str, Any] = {"updated_at": now, **(changes or {})}
        if result.target is not None:
            update["status"] = result.target
            if result.changes_status or trigger in (Trigger.RECONNECT_FAILED, Trigger.LOGGED_OUT):
                update["reason"] = reason
            if self.node_id is not None:
                update["node_id"] = self.node_id if runs_on_node(result.target, trigger) else None
        new = session.model_copy(update=update)
        events = [
            NewEvent(
                type=kind, session_id=session.id, owner=session.owner, timestamp=now,
                payload=_payload(kind, session, new, reason, extra or {}),
            )
            for kind in result.events
        ]
        events = [*(before or ()), *events]
        if result.target is None:
            # Removed from memory only after the write, so hooks (the webhook outbox) that run
            # while the transaction is assembled still see the session's settings.
            await self.store.write(events=events, deleted=[session.id])
            self.registry.sessions.pop(session.id, None)
            self.registry.release_name(session)
        else:
            await self.write_snapshot(session, new, events=events)
        return new

    async def save(self, session: Session, **changes: Any) -> Session:
        """Persist a change that is no transition (counters, settings)."""
        new = session.model_copy(update={"updated_at": self.clock.now(), **changes})
        await self.write_snapshot(session, new)
        return new

    async def write_created(self, session: Session, created: NewEvent) -> None:
        """Write a new session (already in memory) with its ``created`` event."""
        await self.store.write(sessions=[session], events=[created])
        self.notify(session)

    async def write_snapshot(
        self, old: Session, new: Session, *, events: list[NewEvent] | None = None,
        messages: list[NewMessage] | None = None,
    ) -> WriteResult:
        """Put ``new`` in memory, write it (with ``events`` and ``messages``), then notify.

        A write that fails puts ``old`` back. A cancelled write is not undone: it may still
        commit.
        """
        return await self.write_with(old, new, lambda: self.store.write(
            events=events or (), sessions=[new], messages=messages or ()))

    async def write_with(self, old: Session, new: Session, write: Callable[[], Awaitable[WriteResult]]) -> WriteResult:
        """:meth:`write_snapshot` through a store call of the caller's that writes ``new``
        together with its own rows (a paced send settled: watui/manager/pacing.py)."""
        sessions = self.registry.sessions
        sessions[new.id] = new
        try:
            result = await write()
        except Exception:
            if sessions.get(new.id) is new:
                sessions[new.id] = old
            raise
        self.notify(new)
        return result

    def notify(self, session: Session) -> None:
        for callback in self.on_change:
            callback(session)


def runs_on_node(status: Status, trigger: Trigger) -> bool:
    """Whether a session that reached ``status`` by ``trigger`` is still run by its node: a
    running one is, and so is a disconnected one waiting to reconnect, but not one parked by a
    shutdown (another node, or this one's next start, takes it up)."""
    return status in RUNNING or (status is Status.DISCONNECTED and trigger is not Trigger.SHUTDOWN)


def _payload(
    kind: EventType, old: Session, new: Session, reason: str | None, extra: dict[str, Any]
) -> dict[str, Any]:
    if kind is EventType.STATUS:
        return {"from": old.status.value, "to": new.status.value, "reason": reason}
    if kind is EventType.CONNECTED:
        connection = new.connection
        return {"phone_number": new.phone_number, "push_name": new.push_name, "jid": new.jid,
                "platform": connection.platform if connection else None,
                "business_name": connection.business_name if connection else None}
    if kind is EventType.DISCONNECTED:
        return {"reason": reason, **extra}
    if kind is EventType.ERROR:
        payload = {"code": extra.get("code", reason or "error"), "message": extra.get("message", reason or "")}
        if extra.get("details"):  # the engine's own text, when the message rewords it
            payload["details"] = extra["details"]
        return payload
    if kind is EventType.DELETED:
        return {"name": old.name}
    return dict(extra)
