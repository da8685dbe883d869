"""Pydantic models shared by the engine, the console and the HTTP API (snake_case JSON)."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
)

from watui.machine import EventType, Status


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(ts: datetime) -> str:
    """UTC, ISO 8601 with microseconds, as every event timestamp is written."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


PHONE_SEPARATORS = " ().-"
"""What people type between digits; dropped before the check. (The server's OpenAPI pattern
is built from this, so the two cannot drift.)"""
PHONE_SEPARATORS_RE = re.compile(f"[{PHONE_SEPARATORS}]")  # "-" last: a literal in a class
PHONE_RE = re.compile(r"^\+?[1-9][0-9]{6,14}$")  # ASCII digits only: "\d" takes any script's


def normalize_phone(value: str) -> str:
    """E.164 digits without the plus: what WhatsApp uses as a JID's user part."""
    cleaned = PHONE_SEPARATORS_RE.sub("", value or "")
    if not PHONE_RE.fullmatch(cleaned):
        raise ValueError(
            "phone number must be in international format, 7 to 15 digits, e.g. +14155550123"
        )
    return cleaned.lstrip("+")


PhoneNumber = Annotated[str, AfterValidator(normalize_phone)]
WEBHOOK_SECRET_MIN_BYTES, WEBHOOK_SECRET_MAX_BYTES = 24, 64
_B64 = "[A-Za-z0-9+/]"
WEBHOOK_SECRET_PATTERN = (
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)
"""``whsec_`` + padded base64 of 24 to 64 bytes (the OpenAPI document carries it too)."""
WEBHOOK_SECRET_RE = re.compile(WEBHOOK_SECRET_PATTERN)


def _check_secret(value: str | None, info: ValidationInfo) -> str | None:
    """A secret the signer can use: ``whsec_`` + base64 of 24–64 bytes. Anything else would be
    stored, then fail every delivery. (A value already stored is loaded as it is.)"""
    if value is None or (isinstance(info.context, dict) and info.context.get("stored")):
        return value
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True) if value.startswith("whsec_") else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not WEBHOOK_SECRET_RE.fullmatch(value) or not WEBHOOK_SECRET_MIN_BYTES <= len(raw) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"webhook_secret must be whsec_ followed by the base64 of {WEBHOOK_SECRET_MIN_BYTES} "
            f"to {WEBHOOK_SECRET_MAX_BYTES} bytes"
        )
    return value


def mask_url(url: object) -> str:
    """A URL with its password (``user:pw@``) replaced by ``***``: for logs and listings."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostport}{slash}{tail}"


def _check_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isprintable():
        raise ValueError("name must be printable and not blank")
    return value


def name_key(name: str) -> str:
    """What session names are compared by: the name after Unicode NFKC normalisation and case
    folding (then NFKC again, which folding can undo). ``café`` typed precomposed (NFC) or with
    a combining accent (NFD), ``Shop`` and fullwidth ``ｓｈｏｐ`` are each one name with
    ``café``/``shop``. A session keeps and shows its name as it was given."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


_NOT_PRINTABLE = (
    r"\u0000-\u001f\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    r"\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ud800-\uf8ff"
    r"\ufeff\ufff9-\ufffb"
)
"""The assigned characters of the Basic Multilingual Plane that ``str.isprintable`` refuses
(controls, format characters, separators but the space, surrogates, private use), as
``\\uXXXX`` ranges that ECMA-262 (JSON Schema) and Python's ``re`` both read."""
_WHITE_SPACE = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028-\u2029\u202f\u205f\u3000"
)
"""What ``str.strip()`` trims (``str.isspace``), spelled out the same way."""
NAME_PATTERN = (
    f"^[{_WHITE_SPACE}]*[^{_NOT_PRINTABLE}]*[^{_NOT_PRINTABLE}{_WHITE_SPACE}][^{_NOT_PRINTABLE}]*"
    f"[{_WHITE_SPACE}]*$"
)
"""A session name in the OpenAPI schema: once trimmed, not blank and printable. A name this
refuses is refused (``422 VALIDATION_ERROR``); the validator, ``str.isprintable``, also refuses
the few characters a pattern cannot name for every Unicode version (unassigned ones, and
those outside the Basic Multilingual Plane that are not printable)."""

NAME_RULES = (
    "Printable characters only (no control, format, surrogate, private-use or unassigned"
    " characters, and no separator but the plain space), not blank; surrounding white space is"
    " trimmed. Unique among the owner's sessions after Unicode NFKC normalisation and case"
    " folding (`Shop`, `shop` and fullwidth `ｓｈｏｐ` are one name; so are `café` precomposed"
    " and with a combining accent): a name taken that way is `409 CONFLICT`. The name is kept"
    " and shown as given."
)
"""The ``description`` of the ``name`` field of a create and an update (the OpenAPI schema)."""


NO_NUL = "^[^\\u0000]*$"
"""The JSON Schema ``pattern`` of text that :class:`Strict` accepts (no U+0000)."""


def _no_nul_in_schema(schema: dict[str, Any]) -> None:
    """Say in the OpenAPI schema what :meth:`Strict._no_nul` enforces: each text property
    without a pattern of its own gets :data:`NO_NUL`."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and not ({"pattern", "format", "enum", "const"} & node.keys()):
                node["pattern"] = NO_NUL
            for key in ("anyOf", "oneOf", "allOf"):
                for option in node.get(key, ()):
                    visit(option)
            visit(node.get("items"))

    for prop in schema.get("properties", {}).values():
        visit(prop)


class Strict(BaseModel):
    """What callers send: unknown fields are refused, and so is a NUL character in any text.

    U+0000 is never meaningful in a name, a message or a secret, and PostgreSQL ``text`` cannot
    store it (see :mod:`watui.stores.postgres`): refusing it here (``422 VALIDATION_ERROR``)
    tells the caller, where silently changing their text would not. The OpenAPI schema says
    so too (each text property's ``pattern``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_nul_in_schema)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters (U+0000)")
        return value


class LinkMethod(StrEnum):
    QR = "qr"
    PHONE = "phone"


class SessionSettings(Strict):
    auto_reconnect: bool = True
    max_reconnect_attempts: int = Field(10, ge=0, le=1000)
    webhook_url: HttpUrl | None = None
    webhook_secret: str | None = Field(None, description="`whsec_…` (Standard Webhooks); generated if absent")
    webhook_events: list[EventType] | None = Field(None, description="event types to deliver; default all")
    message_history: bool = Field(
        True, description="keep message bodies; false stores each message without its text "
        "(statistics and statuses still count it)"
    )

    _secret_format = field_validator("webhook_secret")(_check_secret)


class SettingsPatch(Strict):
    auto_reconnect: bool | None = None
    max_reconnect_attempts: int | None = Field(None, ge=0, le=1000)
    webhook_url: HttpUrl | None = None
    webhook_secret: str | None = None
    webhook_events: list[EventType] | None = None
    message_history: bool | None = None

    _secret_format = field_validator("webhook_secret")(_check_secret)


class SessionCreate(Strict):
    name: str = Field(..., min_length=1, max_length=64, description=NAME_RULES,
                      json_schema_extra={"pattern": NAME_PATTERN})
    description: str = Field("", max_length=500)
    settings: SessionSettings = Field(default_factory=SessionSettings)
    start: bool = True
    link_method: LinkMethod = LinkMethod.QR
    phone_number: PhoneNumber | None = Field(
        None, description="with link_method=phone: the number to link; a pairing code is requested"
    )

    _name_printable = field_validator("name")(_check_name)


class SessionUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=64, description=NAME_RULES,
                             json_schema_extra={"pattern": NAME_PATTERN})
    description: str | None = Field(None, max_length=500)
    settings: SettingsPatch | None = None

    _name_printable = field_validator("name")(_check_name)


class Session(BaseModel):
    """A snapshot of one session. The manager replaces it on every change; never mutate one."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str = ""
    owner: str
    status: Status = Status.STOPPED
    reason: str | None = None
    node_id: str | None = Field(
        None, description="cluster mode: the node running the session; null when it is not "
        "running, or in single-node mode",
    )
    link_method: LinkMethod = LinkMethod.QR
    phone_number: str | None = None
    push_name: str | None = None
    jid: str | None = None
    linked: bool = False
    created_at: datetime
    updated_at: datetime
    connected_at: datetime | None = None
    last_activity_at: datetime | None = None
    qr_generation: int = 0
    qr_attempt: int = 0
    qr_expires_at: datetime | None = None
    pair_code: str | None = None
    pair_code_expires_at: datetime | None = None
    messages_sent: int = 0
    messages_received: int = 0
    messages_failed: int = 0
    reconnect_attempts: int = 0
    reconnect_count: int = 0
    autostart: bool = False
    settings: SessionSettings = Field(default_factory=SessionSettings)

    @property
    def running(self) -> bool:
        from watui.machine import RUNNING

        return self.status in RUNNING

    def public(self, *, reveal_secret: bool = False, reveal_url: bool = False) -> dict[str, Any]:
        """JSON for clients. The webhook secret is masked, except in the one response that
        generated it (``reveal_secret``): the client cannot verify signatures without it. A
        password in the webhook URL is masked too, except in the response that set it."""
        data = self.model_dump(mode="json")
        if data["settings"].get("webhook_secret") and not reveal_secret:
            data["settings"]["webhook_secret"] = "whsec_…"
        if data["settings"].get("webhook_url") and not reveal_url:
            data["settings"]["webhook_url"] = mask_url(data["settings"]["webhook_url"])
        return data


class SessionPage(BaseModel):
    sessions: list[Session]
    total: int


class Event(BaseModel):
    """One row of the append-only event log. ``id`` is the SSE ``id:``."""

    model_config = ConfigDict(frozen=True)

    id: int
    type: EventType
    session_id: str
    owner: str
    timestamp: datetime
    payload: dict[str, Any]

    def data(self) -> dict[str, Any]:
        """The SSE ``data:`` object: the payload plus ``session_id`` and ``timestamp``."""
        return {**self.payload, "session_id": self.session_id, "timestamp": isoformat(self.timestamp)}

    @classmethod
    def committed(cls, new: NewEvent, id: int) -> Event:
        """``new`` as logged with ``id``, without validating its fields a second time.

        The store makes one Event per event it commits, on the event loop; validating what
        :class:`NewEvent` already validated was a sixth of the store's time per event. The
        fields are the same by name and type (a test holds the two classes to it), so this
        builds the instance ``Event(id=id, **fields)`` would, sharing ``new``'s payload dict
        (nothing changes a payload once it is logged)."""
        event = _new_object(cls)
        _set(event, "__dict__", {"id": id, **new.__dict__})
        _set(event, "__pydantic_fields_set__", set(_EVENT_FIELDS))
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


class NewEvent(BaseModel):
    """An event before the store has given it an id."""

    type: EventType
    session_id: str
    owner: str
    timestamp: datetime = Field(default_factory=utcnow)
    payload: dict[str, Any] = Field(default_factory=dict)


_EVENT_FIELDS = tuple(Event.model_fields)
_new_object = object.__new__
_set = object.__setattr__


class QrCode(BaseModel):
    session_id: str
    qr_text: str
    qr_data: str = Field(..., description="data:image/png;base64,…")
    generation: int
    codes_per_attempt: int
    attempt: int
    expires_at: datetime


class PairCode(BaseModel):
    session_id: str
    code: str
    expires_at: datetime


class MessageDirection(StrEnum):
    IN = "in"
    OUT = "out"


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    RECEIVED = "received"
    FAILED = "failed"


OUTGOING_PROGRESS = (MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
"""The statuses a sent message goes through, in order (a status never moves back)."""


@dataclass(slots=True)
class NewMessage:
    """A message before the store has given it an id."""

    session_id: str
    direction: MessageDirection
    chat: str
    text: str
    message_id: str | None
    status: MessageStatus
    error: str | None = None
    timestamp: datetime = field(default_factory=utcnow)


class Message(BaseModel):
    id: int
    session_id: str
    direction: MessageDirection
    chat: str
    text: str
    message_id: str | None
    status: MessageStatus
    error: str | None = None
    timestamp: datetime


MAX_STATS_DAYS = 366
"""The most UTC days a statistics answer's ``by_day`` may cover."""


class DayCounts(BaseModel):
    """One UTC day's messages: ``sent`` (outgoing, not failed) and ``received``."""

    sent: int = 0
    received: int = 0


class MessageStats(BaseModel):
    """Message statistics of one session or of every session a caller sees.

    Totals count every stored message (retention prunes old ones); ``by_day`` covers the last
    ``days`` UTC days, today included, each present (zeros where there was nothing).
    ``by_type`` counts messages by type; messages are all text today, so it has one key,
    ``text``, and other types will be keys beside it."""

    total: int = 0
    sent: int = Field(0, description="outgoing messages that did not fail")
    received: int = 0
    failed: int = Field(0, description="outgoing messages whose send failed")
    by_type: dict[str, int] = Field(default_factory=dict)
    by_day: dict[str, DayCounts] = Field(default_factory=dict, description='"YYYY-MM-DD" (UTC) → counts')
    last_activity: datetime | None = Field(None, description="the newest message's time")


class MessagePage(BaseModel):
    messages: list[Message]
    total: int


class SendMessage(Strict):
    to: PhoneNumber
    text: str = Field(..., min_length=1, max_length=4096)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class Caller(BaseModel):
    """Who is asking: an owner, and whether it may see every owner's sessions."""

    model_config = ConfigDict(frozen=True)

    owner: str
    admin: bool = False

    @classmethod
    def local_admin(cls) -> Caller:
        return cls(owner="local", admin=True)


class ApiKey(BaseModel):
    id: str
    owner: str
    role: Literal["admin", "user"]
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


SimulateAction = Literal["scan", "disconnect", "logout", "fail", "message"]


class SimulateRequest(Strict):
    action: SimulateAction
    text: str | None = Field(None, max_length=4096, description="with action=message")
    chat: PhoneNumber | None = Field(None, description="with action=message: the sender")
    reason: str | None = Field(None, max_length=200, description="with disconnect/fail")


class EngineHost(BaseModel):
    """One engine host process (``GET /v1/engine/hosts``, the console's hosts view)."""

    id: str
    pid: int | None
    sessions: list[str]
    started_at: datetime
    connects: int = Field(..., description="connect attempts made by this host")
    restarts: int = Field(
        ..., description="host processes that ran in its slot before this one, whatever ended them "
                         "(a crash, recycling, an idle stop)")
    crashes: int = Field(0, description="of those, the ones that ended unasked (crashed)")


class RestoreProgress(BaseModel):
    """Start-up restore of running sessions: ``done`` of ``total`` connects made."""

    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total
