"""``SessionService``: the one API that the console and the HTTP server use.

The in-process implementation is :class:`watui.manager.ScopedService`, which the manager
hands out per caller (``manager.service(caller)``). The protocol speaks only in the models of
:mod:`watui.models`, so a client of the HTTP API can implement it as well.

Every method raises a :class:`watui.errors.WatuiError` subclass on refusal: ``SessionNotFound``
(also for another owner's session), ``InvalidTransition``, ``SessionLimitReached``,
``SessionNotConnected``, ``QrNotAvailable``, ``ValidationFailed``, ``EngineFailure``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal, Protocol

from watui.machine import EventType, Status
from watui.models import (
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
from watui.webhooks import WebhookDeliveryPage

SortKey = Literal["name", "status", "phone_number", "last_activity_at", "created_at"]

# The API's page sizes, in one place: the server's routes refuse more (422), and a client of
# the API (``watui.remote``) pages through with exactly these, so the two cannot disagree.
MAX_PAGE = 100
"""Sessions, messages or webhook deliveries in one page of the API."""
MAX_EVENT_PAGE = 500
"""Events in one read of the API's event log (``/v1/events/log``, ``/v1/sessions/{id}/events``)."""
MAX_BULK_IDS = 1000
"""Sessions that one ``POST /v1/bulk/sessions`` may name."""


class Subscription(Protocol):
    """A live stream of events, in id order, with no gap and no duplicate.

    Iterate it with ``async for``. ``last_id`` is the id of the last event handed out.
    """

    last_id: int

    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def __anext__(self) -> Event: ...
    async def aclose(self) -> None: ...


class SessionService(Protocol):
    @property
    def simulated(self) -> bool:
        """True when the engine is the simulated one (``simulate`` works)."""

    async def list_sessions(
        self,
        *,
        status: Status | None = None,
        query: str | None = None,
        limit: int | None = 20,
        offset: int = 0,
        sort: SortKey = "created_at",
        descending: bool = False,
    ) -> SessionPage:
        """Sessions the caller may see. ``query`` matches name, phone number or status."""

    async def get_session(self, session_id: str) -> Session: ...
    async def create_session(self, spec: SessionCreate) -> Session: ...
    async def update_session(self, session_id: str, patch: SessionUpdate) -> Session: ...
    async def start(self, session_id: str) -> Session: ...
    async def stop(self, session_id: str) -> Session: ...
    async def restart(self, session_id: str) -> Session: ...
    async def logout(self, session_id: str) -> Session: ...
    async def delete(self, session_id: str) -> None: ...

    async def request_pair_code(self, session_id: str, phone_number: str) -> PairCode:
        """Link by phone number: starts the session if needed and returns the 8-char code."""

    async def get_qr(self, session_id: str) -> QrCode:
        """The live QR code; raises ``QrNotAvailable`` when none is up."""

    async def send_message(self, session_id: str, to: str, text: str) -> Message: ...
    async def send(
        self, session_id: str, request: SendMessage, *, upload: Path | None = None,
        upload_type: str | None = None,
    ) -> Message:
        """Send a message of any type. ``upload``: the file of a media message as a local
        file (a multipart part; the service takes it over, and deletes it), instead of
        ``request.media``'s data or url."""

    async def message_media(self, session_id: str, message_id: str) -> MediaContent:
        """A message's stored file (``message_id``: watui's id, or WhatsApp's); raises
        ``MediaNotFound`` when it has none (any more)."""
    async def list_messages(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> MessagePage:
        """Newest first."""

    async def message_stats(self, session_id: str, *, days: int = 30) -> MessageStats:
        """The session's message statistics; ``by_day`` covers the last ``days`` UTC days."""

    async def all_message_stats(self, *, days: int = 30) -> MessageStats:
        """Message statistics over every session the caller sees."""

    async def list_events(
        self, *, session_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        """Past events in id order."""

    async def list_webhook_deliveries(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> WebhookDeliveryPage:
        """The session's webhook deliveries, newest first, each with its attempts log."""

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """A session's latest ``limit`` events, oldest first (the detail pane's log)."""

    def subscribe(
        self,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        types: frozenset[EventType] | None = None,
    ) -> Subscription:
        """Live events for the caller's sessions. With ``after_id``, replay from the log first."""

    async def simulate(self, session_id: str, request: SimulateRequest) -> Session:
        """Play the phone (simulated engine only; ``NotFound`` otherwise)."""

    async def engine_hosts(self) -> list[EngineHost]:
        """The engine host processes (admin only; ``[]`` when engines run inline)."""

    @property
    def restore_progress(self) -> RestoreProgress | None:
        """Start-up restore under way (``None`` once every restored session has connected)."""
