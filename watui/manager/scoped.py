"""The :class:`watui.service.SessionService` of one caller, in-process (the console's and the
server's way in): it scopes every call to what the caller may see and hands it on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watui.bus import BusSubscription
from watui.errors import Forbidden, ValidationFailed
from watui.machine import EventType, Status
from watui.manager.media import media_content
from watui.models import (
    MAX_STATS_DAYS,
    Caller,
    EngineHost,
    Event,
    MediaContent,
    Message,
    MessagePage,
    MessageStats,
    PairCode,
    QrCode,
    RestoreProgress,
    SendMessage,
    Session,
    SessionCreate,
    SessionPage,
    SessionUpdate,
    SimulateRequest,
)
from watui.webhooks import WebhookDeliveryPage, list_deliveries

if TYPE_CHECKING:
    from watui.manager.session_manager import SessionManager


class ScopedService:
    """The :class:`watui.service.SessionService` of one caller, in-process."""

    def __init__(self, manager: SessionManager, caller: Caller) -> None:
        self.manager = manager
        self.caller = caller

    @property
    def simulated(self) -> bool:
        return self.manager.simulated

    async def list_sessions(
        self,
        *,
        status: Status | None = None,
        query: str | None = None,
        limit: int | None = 20,
        offset: int = 0,
        sort: str = "created_at",
        descending: bool = False,
    ) -> SessionPage:
        caller = self.caller
        sessions = [
            s for s in self.manager.registry.sessions.values()
            if (caller.admin or s.owner == caller.owner) and (status is None or s.status is status)
        ]
        if query:
            needle = query.casefold()
            sessions = [
                s for s in sessions
                if needle in s.name.casefold() or needle in (s.phone_number or "") or needle in s.status.value
            ]
        key = _SORT_KEYS.get(sort)
        if key is None:
            raise ValidationFailed(f"cannot sort by {sort!r}", details={"sort": sort})
        if sort == "created_at":
            # The dict keeps creation order already (loaded by rowid, new ones appended).
            if descending:
                sessions.reverse()
        else:
            sessions.sort(key=key, reverse=descending)
        total = len(sessions)
        page = sessions[offset : None if limit is None else offset + limit]
        return SessionPage(sessions=page, total=total)

    async def get_session(self, session_id: str) -> Session:
        return self.manager.visible(self.caller, session_id)

    async def create_session(self, spec: SessionCreate) -> Session:
        return await self.manager.create(self.caller, spec)

    async def update_session(self, session_id: str, patch: SessionUpdate) -> Session:
        return await self.manager.update(self.caller, session_id, patch)

    async def start(self, session_id: str) -> Session:
        return await self.manager.start(self.caller, session_id)

    async def stop(self, session_id: str) -> Session:
        return await self.manager.stop(self.caller, session_id)

    async def restart(self, session_id: str) -> Session:
        return await self.manager.restart(self.caller, session_id)

    async def logout(self, session_id: str) -> Session:
        return await self.manager.logout(self.caller, session_id)

    async def delete(self, session_id: str) -> None:
        await self.manager.delete(self.caller, session_id)

    async def request_pair_code(self, session_id: str, phone_number: str) -> PairCode:
        return await self.manager.request_pair_code(self.caller, session_id, phone_number)

    async def get_qr(self, session_id: str) -> QrCode:
        return await self.manager.get_qr(self.caller, session_id)

    async def send_message(self, session_id: str, to: str, text: str) -> Message:
        return await self.manager.send_message(self.caller, session_id, to, text)

    async def send(
        self, session_id: str, request: SendMessage, *, upload: Path | None = None,
        upload_type: str | None = None,
    ) -> Message:
        return await self.manager.commands.send(self.caller, session_id, request, upload=upload,
                                                upload_type=upload_type)

    async def message_media(self, session_id: str, message_id: str) -> MediaContent:
        self.manager.visible(self.caller, session_id)
        return await media_content(self.manager.journal.media, self.manager.store, session_id, message_id)

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> MessagePage:
        self.manager.visible(self.caller, session_id)
        messages, total = await self.manager.store.list_messages(session_id, limit=limit, offset=offset)
        return MessagePage(messages=messages, total=total)

    async def message_stats(self, session_id: str, *, days: int = 30) -> MessageStats:
        self.manager.visible(self.caller, session_id)
        return await self._stats([session_id], days)

    async def all_message_stats(self, *, days: int = 30) -> MessageStats:
        caller = self.caller
        ids = None if caller.admin else [
            s.id for s in self.manager.registry.sessions.values() if s.owner == caller.owner
        ]
        return await self._stats(ids, days)

    async def _stats(self, session_ids: list[str] | None, days: int) -> MessageStats:
        if not 1 <= days <= MAX_STATS_DAYS:
            raise ValidationFailed(f"days must be 1 to {MAX_STATS_DAYS}", details={"days": days})
        return await self.manager.store.message_stats(
            session_ids, today=self.manager.clock.now().astimezone(UTC).date(), days=days
        )

    async def list_webhook_deliveries(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> WebhookDeliveryPage:
        self.manager.visible(self.caller, session_id)
        return await list_deliveries(self.manager.store, session_id, limit=limit, offset=offset)

    async def list_events(
        self, *, session_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        if session_id is not None:
            self.manager.visible(self.caller, session_id)
        owner = None if self.caller.admin else self.caller.owner
        return await self.manager.store.read_events(
            after_id=after_id, owner=owner, session_id=session_id, limit=limit
        )

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        self.manager.visible(self.caller, session_id)
        return await self.manager.store.recent_events(session_id, limit=limit)

    def subscribe(
        self,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        types: frozenset[EventType] | None = None,
    ) -> BusSubscription:
        if session_id is not None and session_id in self.manager.registry.sessions:
            self.manager.visible(self.caller, session_id)
        owner = None if self.caller.admin else self.caller.owner
        return self.manager.bus.subscribe(owner=owner, session_id=session_id, after_id=after_id, types=types)

    async def simulate(self, session_id: str, request: SimulateRequest) -> Session:
        return await self.manager.simulate(self.caller, session_id, request)

    async def engine_hosts(self) -> list[EngineHost]:
        if not self.caller.admin:
            raise Forbidden("only an admin may list engine hosts")
        return self.manager.engine.hosts()

    @property
    def restore_progress(self) -> RestoreProgress | None:
        return self.manager.restore_progress


_SORT_KEYS: dict[str, Callable[[Session], Any]] = {
    "name": lambda s: s.name.casefold(),
    "status": lambda s: s.status.value,
    "phone_number": lambda s: s.phone_number or "",
    "last_activity_at": lambda s: s.last_activity_at or s.created_at,
    "created_at": lambda s: s.created_at,
}
