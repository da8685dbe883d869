"""The models shared by the engine, the console and the HTTP API (snake_case JSON), by concern:

- :mod:`watui.models.base`: time stamps, phone numbers, session names, the :class:`Strict` base;
- :mod:`watui.models.urls`: webhook secrets, proxy URLs, masking;
- :mod:`watui.models.sessions`: a session, its settings and codes;
- :mod:`watui.models.events`: the event log's rows;
- :mod:`watui.models.messages`: chat messages of every type, media, statistics;
- :mod:`watui.models.access`: callers and API keys;
- :mod:`watui.models.operations`: engine hosts, start-up restore.

Everything is importable from here, as ``from watui.models import Session``.
"""

from __future__ import annotations

from watui.models.access import (
    ApiKey,
    Caller,
)
from watui.models.base import (
    NAME_PATTERN,
    NAME_RULES,
    NO_NUL,
    PHONE_RE,
    PHONE_SEPARATORS,
    PHONE_SEPARATORS_RE,
    WEBHOOK_SECRET_MAX_BYTES,
    WEBHOOK_SECRET_MIN_BYTES,
    PhoneNumber,
    Strict,
    isoformat,
    name_key,
    normalize_phone,
    utcnow,
)
from watui.models.events import (
    Event,
    NewEvent,
)
from watui.models.messages import (
    CAPTIONED_TYPES,
    MAX_STATS_DAYS,
    MEDIA_TYPES,
    OUTGOING_PROGRESS,
    ContactInfo,
    ContactInput,
    DayCounts,
    LocationInfo,
    LocationInput,
    MediaContent,
    MediaInfo,
    MediaInput,
    Message,
    MessageDirection,
    MessagePage,
    MessageStats,
    MessageStatus,
    MessageType,
    NewMessage,
    SendMessage,
    SimulateAction,
    SimulateRequest,
    check_message_parts,
    message_details,
    stored_message_fields,
)
from watui.models.operations import (
    EngineHost,
    RestoreProgress,
)
from watui.models.sessions import (
    MAX_SEND_RATE,
    SEND_RATE_RULES,
    Connection,
    LinkMethod,
    PairCode,
    QrCode,
    Session,
    SessionCreate,
    SessionPage,
    SessionSettings,
    SessionUpdate,
    SettingsPatch,
    Warmup,
)
from watui.models.urls import (
    PROXY_PATTERN,
    PROXY_RULES,
    PROXY_SCHEMES,
    WEBHOOK_SECRET_PATTERN,
    WEBHOOK_SECRET_RE,
    check_proxy,
    mask_url,
    scrub_secret,
)

__all__ = [
    "CAPTIONED_TYPES",
    "MAX_SEND_RATE",
    "MAX_STATS_DAYS",
    "MEDIA_TYPES",
    "NAME_PATTERN",
    "NAME_RULES",
    "NO_NUL",
    "OUTGOING_PROGRESS",
    "PHONE_RE",
    "PHONE_SEPARATORS",
    "PHONE_SEPARATORS_RE",
    "PROXY_PATTERN",
    "PROXY_RULES",
    "PROXY_SCHEMES",
    "SEND_RATE_RULES",
    "WEBHOOK_SECRET_MAX_BYTES",
    "WEBHOOK_SECRET_MIN_BYTES",
    "WEBHOOK_SECRET_PATTERN",
    "WEBHOOK_SECRET_RE",
    "ApiKey",
    "Caller",
    "Connection",
    "ContactInfo",
    "ContactInput",
    "DayCounts",
    "EngineHost",
    "Event",
    "LinkMethod",
    "LocationInfo",
    "LocationInput",
    "MediaContent",
    "MediaInfo",
    "MediaInput",
    "Message",
    "MessageDirection",
    "MessagePage",
    "MessageStats",
    "MessageStatus",
    "MessageType",
    "NewEvent",
    "NewMessage",
    "PairCode",
    "PhoneNumber",
    "QrCode",
    "RestoreProgress",
    "SendMessage",
    "Session",
    "SessionCreate",
    "SessionPage",
    "SessionSettings",
    "SessionUpdate",
    "SettingsPatch",
    "SimulateAction",
    "SimulateRequest",
    "Strict",
    "Warmup",
    "check_message_parts",
    "check_proxy",
    "isoformat",
    "mask_url",
    "message_details",
    "name_key",
    "normalize_phone",
    "scrub_secret",
    "stored_message_fields",
    "utcnow",
]
