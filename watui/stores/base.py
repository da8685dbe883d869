"""What every store backend offers: the calls the manager, bus, server, webhooks and
retention make today, written down so a second backend (PostgreSQL) can stand in for SQLite.

Both backends keep the same promises: a write's future resolves only after its transaction
committed; event ids grow strictly in the order readers can see them (a reader that resumes
after id N never misses an event committed later with a smaller id); ``on_commit`` callbacks
run in commit order.

``fetchall`` and ``write(statements=...)`` carry SQL written by other modules (the webhook
outbox, retention, the key watcher). That SQL is in the backend's own dialect, named by
``dialect``: SQLite takes ``?`` placeholders and ``json_each``; PostgreSQL takes ``$1`` and
``unnest``/``ANY``. :mod:`watui.stores.dialects` writes a statement for either. On PostgreSQL
``fetchall`` runs in a transaction of its own on a pooled connection, so it may also write
(``UPDATE … RETURNING``: the outbox's claims); on SQLite it only reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from watui.machine import EventType
from watui.models import (
    ApiKey,
    Event,
    Message,
    MessageStats,
    MessageStatus,
    NewEvent,
    NewMessage,
    Session,
)
from watui.stores.group_commit import EventHook, Statement, WriteResult

Dialect = Literal["sqlite", "postgresql"]


@runtime_checkable
class StoreProtocol(Protocol):
    """Sessions, the append-only event log, messages and API keys."""

    dialect: Dialect
    event_hooks: list[EventHook]
    """Called for each event while its transaction is assembled; the statements returned
    commit with the event (the webhook outbox)."""
    on_commit: list[Callable[[list[Event]], None]]
    """Called in commit order, right after each transaction, with its events (the bus)."""
    commit_observers: list[Callable[[float], None]]
    """Called with each transaction's duration in seconds (``GET /metrics``)."""
    commits: int
    last_committed_id: int
    """The newest event id this store has seen committed."""
    failing: str | None

    @property
    def closed(self) -> bool: ...

    @property
    def broken(self) -> str | None:
        """Why this store cannot write again until watui restarts (its writer died), or None."""
        ...

    async def close(self) -> None: ...

    # writes
    async def write(
        self,
        *,
        events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
        deleted: Sequence[str] = (),
        messages: Sequence[NewMessage] = (),
        statements: Sequence[Statement] = (),
    ) -> WriteResult: ...

    async def append(self, events: Sequence[NewEvent], *, sessions: Sequence[Session] = ()) -> list[Event]: ...

    # events
    async def read_events(
        self,
        *,
        after_id: int = 0,
        owner: str | None = None,
        session_id: str | None = None,
        types: Iterable[EventType] | None = None,
        limit: int = 500,
    ) -> list[Event]: ...

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]: ...
    async def max_event_id(self) -> int: ...
    async def oldest_event_id(self) -> int: ...
    async def count_events(self) -> int: ...

    # sessions and messages
    async def load_sessions(self) -> list[Session]: ...
    async def list_messages(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[Message], int]: ...
    async def get_message(self, session_id: str, id: int) -> Message | None: ...
    async def find_message(self, session_id: str, message_id: str) -> Message | None: ...
    async def message_stats(
        self, session_ids: Sequence[str] | None, *, today: date, days: int
    ) -> MessageStats: ...
    async def update_message_status(
        self, session_id: str, message_id: str, status: MessageStatus, *, events: Sequence[NewEvent] = ()
    ) -> WriteResult: ...
    # Pacing: sends waiting in a session's queue are stored as pending (watui/manager/pacing.py)
    async def pending_messages(self, session_id: str) -> list[Message]: ...
    async def pending_sessions(self) -> list[str]: ...
    async def settle_message(
        self, session_id: str, id: int, *, status: MessageStatus, message_id: str | None,
        error: str | None, timestamp: datetime, keep_body: bool, events: Sequence[NewEvent] = (),
        sessions: Sequence[Session] = (),
    ) -> WriteResult: ...

    # API keys
    async def create_api_key(self, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]: ...
    async def find_api_key(self, secret: str) -> ApiKey | None: ...
    async def list_api_keys(self) -> list[ApiKey]: ...
    async def revoke_api_key(self, key_id: str) -> bool: ...
    async def count_api_keys(self) -> int: ...

    # SQL in the backend's dialect, for modules that own their own tables
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def hash_key(secret: str) -> str:
    # API keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()
