"""Errors that the session service raises.

Each carries a stable ``code`` and the HTTP ``status`` the server answers with, so the
console and the server describe a refusal the same way.
"""

from __future__ import annotations

from typing import Any


class WatuiError(Exception):
    """Base of every error the service raises on purpose."""

    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this refusal (``WWW-Authenticate``, ``Retry-After``)."""
        return {}


class Unauthorized(WatuiError):
    code = "UNAUTHORIZED"
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(WatuiError):
    code = "FORBIDDEN"
    status = 403


class SessionNotFound(WatuiError):
    code = "SESSION_NOT_FOUND"
    status = 404

    def __init__(self, session_id: str) -> None:
        super().__init__(f"No session with id {session_id!r}", details={"session_id": session_id})


class NotFound(WatuiError):
    code = "NOT_FOUND"
    status = 404


class InvalidTransition(WatuiError):
    """An action or engine fact that the state machine does not allow in this status."""

    code = "INVALID_TRANSITION"
    status = 409

    def __init__(self, status: str, trigger: str) -> None:
        super().__init__(
            f"Cannot {trigger.replace('_', ' ')} a session that is {status}",
            details={"status": status, "trigger": trigger},
        )
        self.from_status = status
        self.trigger = trigger


class SessionNotConnected(WatuiError):
    code = "SESSION_NOT_CONNECTED"
    status = 409


class QrNotAvailable(WatuiError):
    code = "QR_NOT_AVAILABLE"
    status = 409


class SessionLimitReached(WatuiError):
    code = "SESSION_LIMIT_REACHED"
    status = 409


class Conflict(WatuiError):
    code = "CONFLICT"
    status = 409


class ValidationFailed(WatuiError):
    code = "VALIDATION_ERROR"
    status = 422


class EngineFailure(WatuiError):
    """The engine refused or failed an operation (send, pair by phone, ...)."""

    code = "ENGINE_ERROR"
    status = 502


class StoreUnavailable(WatuiError):
    """The store could not write (disk full, read-only, I/O error). Nothing changed: memory
    is as it was before the call, and a retry may succeed once the store can write again."""

    code = "STORE_UNAVAILABLE"
    status = 503
    retry_after = 5
    """Seconds a client should wait before retrying (the ``Retry-After`` header)."""

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NodeUnavailable(WatuiError):
    """Cluster mode: the node that runs the session did not answer in time (or the session is
    between nodes). That node may still carry out a call that reached it before it stalled,
    so read the session before repeating a call that is not idempotent; retry after
    ``retry_after`` seconds."""

    code = "NODE_UNAVAILABLE"
    status = 503
    retry_after = 2

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class SendQueueFull(WatuiError):
    """Pacing (``settings.send_rate``): the session's queue of sends waiting their turn is full
    (``WATUI_SEND_QUEUE_LIMIT``). Nothing was queued; a slot frees with each message sent, in
    about ``retry_after`` seconds. ``details``: ``queued``, ``limit``, ``send_rate`` (now, with
    any warm-up), ``retry_after``."""

    code = "SEND_QUEUE_FULL"
    status = 429

    @property
    def retry_after(self) -> int:
        value = self.details.get("retry_after")
        return value if isinstance(value, int) and value > 0 else 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Overloaded(WatuiError):
    """This node takes on no more running sessions now: it runs as many as its capacity
    (``WATUI_NODE_CAPACITY``), or its event loop is falling behind. Nothing was changed; the
    same call may succeed after ``retry_after`` seconds (sooner, at capacity, once a session
    stops). Stops, deletes and reads are never refused this way.

    ``details``: ``reason`` (``capacity`` or ``loop_lag``), ``capacity``, ``running``,
    ``retry_after``, and for ``loop_lag`` also ``lag_p99_ms`` and ``lag_limit_ms``. The
    connection cap (watui/server/connections.py) answers the same code with no details."""

    code = "OVERLOADED"
    status = 503
    default_retry_after = 5

    @property
    def retry_after(self) -> int:
        """Seconds a client should wait (the ``Retry-After`` header). Read from ``details``, so
        the error rebuilt from a server's answer (watui/remote/errors.py) has it too."""
        value = self.details.get("retry_after")
        return value if isinstance(value, int) and value > 0 else self.default_retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LeaseLost(NodeUnavailable):
    """Cluster mode: this node no longer holds the session's lease (another node claimed it,
    with a newer fencing token), so the store refused the write. The node drops the session."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"Session {session_id!r} moved to another node; nothing was changed here. Retry.",
            details={"session_id": session_id},
        )
        self.session_id = session_id


class EventsExpired(WatuiError):
    """A resume from before the oldest event the log still keeps (retention pruned the rest)."""

    code = "EVENTS_EXPIRED"
    status = 410

    def __init__(self, last_event_id: int, oldest_id: int) -> None:
        super().__init__(
            f"Events after {last_event_id} are no longer kept; the oldest kept event is {oldest_id}."
            f" Resume with Last-Event-ID {oldest_id - 1} (accepting the gap) or without one.",
            details={"last_event_id": last_event_id, "oldest_id": oldest_id},
        )
