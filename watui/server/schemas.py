"""Response models and error documentation for the HTTP API.

Request bodies use the models of :mod:`watui.models` as they are (``SessionCreate``,
``SessionUpdate``, ``SendMessage``, ``SimulateRequest``). Responses need their own models
where what goes over the wire differs from the internal one: a session's webhook secret is
masked (``Session.public()``), and a masked secret would fail ``SessionSettings``'s format
check, so :class:`SessionSettingsView` carries the same fields without the validators.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from watui.machine import EventType
from watui.models import PhoneNumber, RestoreProgress, Session, SessionSettings, Strict, Warmup


class SessionSettingsView(BaseModel):
    """``SessionSettings`` as returned: the webhook secret is masked as ``whsec_…``."""

    auto_reconnect: bool = True
    max_reconnect_attempts: int = 10
    webhook_url: str | None = Field(default=None, description="where events are POSTed (Standard Webhooks)")
    webhook_secret: str | None = Field(default=None, description="masked as `whsec_…`, except in the create/PATCH response that generated it")
    webhook_events: list[EventType] | None = Field(default=None, description="event types delivered; null = all")
    message_history: bool = Field(default=True, description="keep message bodies; false stores messages without text")
    download_media: bool = Field(default=True, description="save received media's bytes so `GET …/messages/{id}/media` serves them")
    proxy: str | None = Field(default=None, description="the session's own proxy, its password masked as "
                              "`***` except in the create/PATCH response that set it; null: `WATUI_PROXY` or direct")
    send_rate: int | None = Field(default=None, description="pacing: messages a minute at most; null: not paced")
    warmup: Warmup | None = Field(default=None, description="pacing: the ramp up to send_rate for a new number")


# The view must list exactly the fields of the model it shows; a test checks it too.
assert set(SessionSettingsView.model_fields) == set(SessionSettings.model_fields)


class SessionView(Session):
    """A session as clients see it (``Session.public()``)."""

    settings: SessionSettingsView = Field(default_factory=lambda: SessionSettingsView())  # type: ignore[assignment]


class SessionCreated(BaseModel):
    session_id: str
    stream_url: str = Field(..., description="absolute URL of this session's SSE stream")
    session: SessionView


class SessionList(BaseModel):
    sessions: list[SessionView]
    total: int = Field(..., description="sessions matching the filter, before paging")


class PairCodeRequest(Strict):
    """``POST /sessions/{id}/pair-code``: link by phone number instead of a QR code."""

    phone_number: PhoneNumber = Field(..., description="international format, e.g. +14155550123")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        "ok", description="`degraded`: the node answers, but its store cannot write right now "
        "(`problems` says why); writes get `503 STORE_UNAVAILABLE` meanwhile")
    problems: list[str] = Field(default_factory=list)
    version: str
    engine: str = Field(..., description="neonize (real WhatsApp) or simulated")
    restoring: RestoreProgress | None = Field(
        None,
        description="start-up restore under way: `done` of `total` sessions have had their "
        "connect (a few at a time); null once it is over",
    )


class ErrorInfo(BaseModel):
    code: str = Field(..., description="stable, machine-readable: SESSION_NOT_FOUND, …")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorInfo


# Every code the server can answer with, by status: what /docs shows for each route.
ERROR_CODES: dict[int, dict[str, str]] = {
    400: {"BAD_REQUEST": "the request cannot be read (bad header, bad encoding)"},
    401: {"UNAUTHORIZED": "no API key, an unknown one or a revoked one"},
    403: {"FORBIDDEN": "the key is valid but may not do this (an admin-only route: metrics, engine "
                       "hosts, cluster)"},
    404: {
        "SESSION_NOT_FOUND": "no such session, or it belongs to another owner",
        "NOT_FOUND": "no such route (also /simulate with the real engine, /cluster on a server "
                     "that runs alone)",
        "MEDIA_NOT_FOUND": "the message has no stored file (not a media message, download_media "
                           "off, or pruned by media retention)",
    },
    405: {"METHOD_NOT_ALLOWED": "the route exists but not with this method"},
    406: {"NOT_ACCEPTABLE": "the Accept header asks for a type this route cannot give"},
    409: {
        "INVALID_TRANSITION": "the session's status does not allow this action",
        "SESSION_NOT_CONNECTED": "sending needs a connected session",
        "QR_NOT_AVAILABLE": "no QR code is up right now",
        "SESSION_LIMIT_REACHED": "the owner already runs its maximum of sessions",
        "CONFLICT": "the request conflicts with the session's state",
    },
    410: {"EVENTS_EXPIRED": "the resume point is older than the oldest kept event"
                            " (`details.oldest_id`)"},
    413: {"PAYLOAD_TOO_LARGE": "the body is larger than the server accepts"},
    415: {"UNSUPPORTED_MEDIA_TYPE": "the body must be application/json"},
    422: {
        "VALIDATION_ERROR": "malformed JSON, a wrong type, an unknown field or a bad value",
        "WEBHOOK_URL_FORBIDDEN": "the webhook URL points at a loopback, private, link-local or "
                                 "other non-public address",
        "MEDIA_TYPE_MISMATCH": "the file's content is not what the message type or the declared "
                               "mimetype says (a voice note must be ogg/opus)",
        "MEDIA_TOO_LARGE": "the file is over its type's size cap",
        "MEDIA_INVALID": "the file cannot be read (base64 that does not decode, an empty file)",
        "MEDIA_URL_FORBIDDEN": "media.url points at a loopback, private, link-local or other "
                               "non-public address",
        "MEDIA_FETCH_FAILED": "media.url could not be downloaded (an HTTP error, a network error, "
                              "a timeout)",
    },
    429: {
        "TOO_MANY_STREAMS": "the key (or the server) already holds its maximum of open streams",
        "SEND_QUEUE_FULL": "pacing: the session's queue of sends is full (`WATUI_SEND_QUEUE_LIMIT`);"
                           " nothing was queued, retry after `Retry-After` seconds",
    },
    500: {"INTERNAL_ERROR": "a bug; the message carries no trace"},
    502: {"ENGINE_ERROR": "the WhatsApp engine refused or failed the operation"},
    503: {
        "STORE_UNAVAILABLE": "the store cannot write right now (disk full, read-only);"
                             " nothing changed, retry after `Retry-After` seconds",
        "NODE_UNAVAILABLE": "cluster mode: the node that runs the session did not answer in time;"
                            " retry after `Retry-After` seconds",
        "OVERLOADED": "a create that starts, a start or a restart, while the node runs"
                      " `WATUI_NODE_CAPACITY` sessions (`details.reason` `capacity`) or its event loop"
                      " falls behind (`loop_lag`); also a connection past the server's connection"
                      " cap. Nothing changed; retry after `Retry-After` seconds",
    },
}

ERROR_CODE_FOR_STATUS: dict[int, str] = {
    **{status: next(iter(codes)) for status, codes in ERROR_CODES.items()},
    404: "NOT_FOUND",
}
"""The code for an HTTP error raised outside the service (unknown route, wrong method, …)."""


def error_responses(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given statuses, each listing its error codes.

    Every authenticated route can also answer 401 and 503, and every route 422 and 500.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *((401, 503) if auth else ()), 422, 500}):
        codes = ERROR_CODES[status]
        listing = "; ".join(f"`{code}`: {why}" for code, why in codes.items())
        out[status] = {"model": ErrorResponse, "description": listing}
    return out
