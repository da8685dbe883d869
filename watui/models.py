"""Pydantic models shared by the engine, the console and the HTTP API (snake_case JSON)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
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


PROXY_SCHEMES = ("socks5", "http", "https")
PROXY_RULES = (
    "`socks5://[user:pass@]host:port`, `http://[user:pass@]host:port` or"
    " `https://[user:pass@]host:port` (user and password percent-encoded): every connection of"
    " the session goes through it. The password is masked (`user:***@`) in every answer but the"
    " one that set it. null: `WATUI_PROXY` if the server has one, else direct."
)
"""The ``description`` of ``settings.proxy`` (the OpenAPI schema)."""
_USERINFO = r"A-Za-z0-9._~!$&'()*+,;=%-"
"""What a proxy's user name and password may hold as typed (RFC 3986's unreserved and
sub-delimiter characters, and ``%`` for the rest, percent-encoded)."""
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
PROXY_PATTERN = (
    rf"^(?:[Ss][Oo][Cc][Kk][Ss]5|[Hh][Tt][Tt][Pp][Ss]?)://(?:[{_USERINFO}]+(?::[{_USERINFO}]*)?@)?"
    rf"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):{_PORT}/?$"
)
"""A proxy address, exactly as the validator takes it (the OpenAPI schema carries it too);
``[0-9]``, not ``\\d``, which Python reads as any script's digits."""
_PROXY_RE = re.compile(PROXY_PATTERN)


def check_proxy(value: str | None) -> str | None:
    """A proxy address an engine can dial: ``socks5``, ``http`` or ``https``, a host name (or
    address, IPv6 in brackets) and a port from 1 to 65535, maybe ``user[:password]@`` (other
    characters than :data:`_USERINFO`'s percent-encoded), nothing after the port but ``/``.
    The scheme is lower-cased and a trailing ``/`` dropped. (The masked form, ``user:***@``, is
    an address too, so a session read back from the API validates.)"""
    if value is None:
        return None
    if not _PROXY_RE.fullmatch(value):
        raise ValueError(_why_not_a_proxy(value))
    scheme, _, rest = value.partition("://")
    return f"{scheme.lower()}://{rest.removesuffix('/')}"


def _why_not_a_proxy(value: str) -> str:
    """What is wrong with ``value`` as a proxy address, in words."""
    form = "socks5://[user:pass@]host:port or http(s)://[user:pass@]host:port"
    scheme, sep, rest = value.partition("://")
    if not sep:
        return f"proxy must be a URL: {form}"
    if scheme.lower() not in PROXY_SCHEMES:
        return f"proxy must be {form} (got scheme {scheme.lower()!r})"
    authority = rest.removesuffix("/")
    if any(ch in authority for ch in "/?#"):
        return "proxy must be only scheme://[user:pass@]host:port, no path, query or fragment"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "proxy must not contain spaces or control characters"
    userinfo, at, hostport = authority.rpartition("@")
    if at and not userinfo.split(":", 1)[0]:
        return "proxy has a password but no user name (user:pass@host:port)"
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    if not colon or not port:
        return "proxy must give a port: scheme://[user:pass@]host:port (1 to 65535)"
    if not re.fullmatch(_PORT, port):
        return "proxy port must be a number from 1 to 65535"
    if not host:
        return "proxy must name a host: scheme://[user:pass@]host:port"
    if at and not re.fullmatch(f"[{_USERINFO}]+(?::[{_USERINFO}]*)?", userinfo):
        return "proxy user name and password must be percent-encoded (@ as %40, : in a user name as %3A)"
    return "proxy host must be a host name, an IPv4 address or an [IPv6] address (a name in ASCII: punycode)"


def _check_proxy_field(value: str | None, info: ValidationInfo) -> str | None:
    if isinstance(info.context, dict) and info.context.get("stored"):
        return value  # checked when it was set
    return check_proxy(value)


def scrub_secret(text: str, url: str | None) -> str:
    """``text`` with ``url``'s password (as given, decoded or percent-encoded) replaced by ``***``:
    for messages an engine wrote that may quote its proxy address (a dial error)."""
    if not url or not text:
        return text
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    password = userinfo.split(":", 1)[1] if at and ":" in userinfo else ""
    if not password:
        return text
    user = userinfo.split(":", 1)[0]
    for secret in {password, unquote(password), quote(unquote(password), safe="")}:
        text = text.replace(f"{user}:{secret}@", f"{user}:***@")
        if len(secret) >= 3:  # "a" would blank every "a"; anything longer is the secret
            text = text.replace(secret, "***")
    return text


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


MAX_SEND_RATE = 600
"""The fastest ``send_rate`` a session may have, in messages a minute (one every 0.1 s)."""

SEND_RATE_RULES = (
    "Pacing: at most this many messages a minute leave the session, spaced with ±30 % jitter"
    " (the average holds). Sends past it wait in the session's queue in order, answered"
    " `202` with status `pending`; a full queue is `429 SEND_QUEUE_FULL` with `Retry-After`."
    " null: no pacing (the default), every send goes at once."
)


class Warmup(Strict):
    """A ramp for a new number: the session's rate climbs from ``start_rate`` on the day it was
    created to ``send_rate`` after ``days`` days, in a straight line."""

    days: int = Field(..., ge=1, le=90, description="days from the session's creation to the full rate")
    start_rate: int = Field(1, ge=1, le=MAX_SEND_RATE, description="messages a minute on the first day")


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
    download_media: bool = Field(
        True, description="save received media's bytes so `GET …/messages/{id}/media` serves them"
    )
    proxy: str | None = Field(None, max_length=2048, description=PROXY_RULES,
                              json_schema_extra={"pattern": PROXY_PATTERN})
    send_rate: int | None = Field(None, ge=1, le=MAX_SEND_RATE, description=SEND_RATE_RULES)
    warmup: Warmup | None = Field(None, description="with send_rate: a ramp up to it for a new number")

    _secret_format = field_validator("webhook_secret")(_check_secret)
    _proxy_format = field_validator("proxy")(_check_proxy_field)


class SettingsPatch(Strict):
    auto_reconnect: bool | None = None
    max_reconnect_attempts: int | None = Field(None, ge=0, le=1000)
    webhook_url: HttpUrl | None = None
    webhook_secret: str | None = None
    webhook_events: list[EventType] | None = None
    message_history: bool | None = None
    download_media: bool | None = None
    proxy: str | None = Field(None, max_length=2048, description=PROXY_RULES + " In a PATCH, null removes "
                              "the session's own proxy; a running session reconnects through the new one at once.",
                              json_schema_extra={"pattern": PROXY_PATTERN})
    send_rate: int | None = Field(None, ge=1, le=MAX_SEND_RATE,
                                  description=SEND_RATE_RULES + " In a PATCH, null turns pacing off; "
                                  "messages already queued then go at once, in order.")
    warmup: Warmup | None = Field(None, description="null: no ramp")

    _secret_format = field_validator("webhook_secret")(_check_secret)
    _proxy_format = field_validator("proxy")(_check_proxy_field)


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


class Connection(BaseModel):
    """The linked account as the engine last reported it."""

    model_config = ConfigDict(frozen=True)

    platform: str | None = Field(None, description="the phone's platform: `android`, `iphone`, `smba` "
                                 "(WhatsApp Business on Android), `smbi`, …")
    push_name: str | None = Field(None, description="the name the account shows to its contacts")
    business_name: str | None = Field(None, description="a WhatsApp Business account's verified name")
    connected_at: datetime | None = Field(None, description="when the last connection was made; null "
                                          "between a link and its first connection")


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
    connection: Connection | None = Field(
        None, description="what the engine reported about the linked phone at its last link or "
        "connect; null until it reported anything (and again after a logout)",
    )

    @property
    def running(self) -> bool:
        from watui.machine import RUNNING

        return self.status in RUNNING

    def public(
        self, *, reveal_secret: bool = False, reveal_url: bool = False, reveal_proxy: bool = False,
    ) -> dict[str, Any]:
        """JSON for clients. The webhook secret is masked, except in the one response that
        generated it (``reveal_secret``): the client cannot verify signatures without it. A
        password in the webhook URL or the proxy is masked too, except in the response that
        set it (``reveal_url``, ``reveal_proxy``)."""
        data = self.model_dump(mode="json")
        if data["settings"].get("webhook_secret") and not reveal_secret:
            data["settings"]["webhook_secret"] = "whsec_…"
        if data["settings"].get("webhook_url") and not reveal_url:
            data["settings"]["webhook_url"] = mask_url(data["settings"]["webhook_url"])
        if data["settings"].get("proxy") and not reveal_proxy:
            data["settings"]["proxy"] = mask_url(data["settings"]["proxy"])
        return data

    @property
    def has_secrets(self) -> bool:
        """True when :meth:`public` masks something (a plain ``model_dump`` would show it)."""
        s = self.settings
        return bool(s.webhook_secret or s.webhook_url or s.proxy)


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


class MessageType(StrEnum):
    """The kinds of chat message (``watui.engines.base.MESSAGE_TYPES``)."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"


MEDIA_TYPES = frozenset({MessageType.IMAGE, MessageType.VIDEO, MessageType.AUDIO, MessageType.VOICE,
                         MessageType.DOCUMENT, MessageType.STICKER})
"""The types whose message carries a file."""
CAPTIONED_TYPES = frozenset({MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT})
"""The media types WhatsApp shows a caption with."""


class MediaInfo(BaseModel):
    """A media message's file, as messages, events and webhooks describe it (never the
    bytes: ``GET /v1/sessions/{id}/messages/{message_id}/media`` serves those)."""

    id: str | None = Field(None, description="the file's id in watui's media store; null when its "
                           "bytes were not kept (`download_media` off, or the download failed)")
    mimetype: str
    size: int = Field(..., description="bytes")
    sha256: str = Field(..., description='hex SHA-256 of the bytes ("" when not known)')
    filename: str | None = None


class LocationInfo(BaseModel):
    """A shared location, as a message carries it."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ContactInfo(BaseModel):
    """A shared contact card, as a message carries it (``phone`` as the card gave it)."""

    name: str
    phone: str


class LocationInput(Strict):
    latitude: float = Field(..., ge=-90, le=90)
    longitude: float = Field(..., ge=-180, le=180)
    name: str | None = Field(None, max_length=256)
    address: str | None = Field(None, max_length=1024)


class ContactInput(Strict):
    name: str = Field(..., min_length=1, max_length=256)
    phone: PhoneNumber


def message_details(
    media: MediaInfo | None, location: BaseModel | None, contact: BaseModel | None
) -> str | None:
    """What a message carries beside its text, as the stores keep it (a JSON column)."""
    parts: dict[str, Any] = {}
    if media is not None:
        parts["media"] = media.model_dump(exclude_none=True)
    if location is not None:
        parts["location"] = location.model_dump(exclude_none=True)
    if contact is not None:
        parts["contact"] = contact.model_dump()
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False) if parts else None


def stored_message_fields(type_: str | None, text: str, details: str | None) -> dict[str, Any]:
    """A stored row's ``type``, ``text`` and ``details`` as :class:`Message` fields: a media
    message's text column holds its caption."""
    kind = MessageType(type_ or "text")
    fields: dict[str, Any] = {"type": kind, "text": text if kind is MessageType.TEXT else ""}
    if kind is not MessageType.TEXT and text:
        fields["caption"] = text
    if details:
        fields.update(json.loads(details))
    return fields


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
    type: MessageType = MessageType.TEXT
    """With a type other than text, ``text`` is the caption ("" if none)."""
    details: str | None = None
    """:func:`message_details`: the media descriptor, location or contact, as JSON."""

    def fields(self) -> dict[str, Any]:
        """The :class:`Message` fields of this message (all but ``id``)."""
        return {"session_id": self.session_id, "direction": self.direction, "chat": self.chat,
                "message_id": self.message_id, "status": self.status, "error": self.error,
                "timestamp": self.timestamp,
                **stored_message_fields(self.type, self.text, self.details)}


class Message(BaseModel):
    id: int
    session_id: str
    direction: MessageDirection
    chat: str
    text: str = Field(..., description='a text message\'s body ("" for the other types)')
    message_id: str | None
    status: MessageStatus
    error: str | None = None
    timestamp: datetime
    type: MessageType = MessageType.TEXT
    caption: str | None = Field(None, description="a media message's caption")
    media: MediaInfo | None = None
    location: LocationInfo | None = None
    contact: ContactInfo | None = None


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
    ``by_type`` counts messages by type (:class:`MessageType`), the types present only."""

    total: int = 0
    sent: int = Field(0, description="outgoing messages sent (not failed, not pending)")
    received: int = 0
    failed: int = Field(0, description="outgoing messages whose send failed")
    pending: int = Field(0, description="outgoing messages waiting in the session's pacing queue")
    by_type: dict[str, int] = Field(default_factory=dict)
    by_day: dict[str, DayCounts] = Field(default_factory=dict, description='"YYYY-MM-DD" (UTC) → counts')
    last_activity: datetime | None = Field(None, description="the newest message's time")


@dataclass(frozen=True, slots=True)
class MediaContent:
    """A stored media file as a service hands it out: what it is, and ``read(start, end)``
    for bytes ``start`` to ``end`` inclusive (in pieces)."""

    mimetype: str
    size: int
    filename: str | None
    read: Callable[[int, int], AsyncIterator[bytes]]


class MessagePage(BaseModel):
    messages: list[Message]
    total: int


class MediaInput(Strict):
    """A file to send: its bytes as base64 ``data``, or a ``url`` watui fetches (under the
    webhook address rules); or, in a ``multipart/form-data`` send, the ``file`` part."""

    data: str | None = Field(None, description="the bytes, base64")
    url: HttpUrl | None = Field(None, description="http(s) URL watui downloads the bytes from")
    mimetype: str | None = Field(None, max_length=255, description="checked against the content")
    filename: str | None = Field(None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> MediaInput:
        given = (self.data is not None) + (self.url is not None)
        uploaded = isinstance(info.context, dict) and info.context.get("upload")
        if given > 1 or (uploaded and given):
            raise ValueError("media takes one of data or url (or a multipart file), not several")
        if not given and not uploaded:
            raise ValueError("media needs data (base64) or url")
        return self


def check_message_parts(
    kind: MessageType, text: str | None, caption: str | None, media: object | None,
    location: object | None, contact: object | None,
) -> None:
    """Each type with what it needs and nothing it cannot carry (``ValueError`` says what)."""
    if kind is MessageType.TEXT:
        if text is None or not text.strip():
            raise ValueError("a text message needs text (not blank)")
    elif text is not None:
        raise ValueError(f"text goes with type text; a {kind.value} message takes caption")
    if kind in MEDIA_TYPES and media is None:
        raise ValueError(f"a {kind.value} message needs media")
    if kind not in MEDIA_TYPES and media is not None:
        raise ValueError(f"media goes with the media types, not {kind.value}")
    if caption is not None and kind not in CAPTIONED_TYPES:
        raise ValueError(f"a {kind.value} message has no caption (only image, video, document)")
    if (kind is MessageType.LOCATION) != (location is not None):
        raise ValueError("location goes with type location, and type location needs it")
    if (kind is MessageType.CONTACT) != (contact is not None):
        raise ValueError("contact goes with type contact, and type contact needs it")


class SendMessage(Strict):
    to: PhoneNumber
    type: MessageType = MessageType.TEXT
    text: str | None = Field(None, min_length=1, max_length=4096, description="with type text")
    caption: str | None = Field(None, max_length=1024, description="with image, video, document")
    media: MediaInput | None = Field(None, description="with image, video, audio, voice, document, sticker")
    location: LocationInput | None = Field(None, description="with type location")
    contact: ContactInput | None = Field(None, description="with type contact")

    @model_validator(mode="after")
    def _parts(self) -> SendMessage:
        check_message_parts(self.type, self.text, self.caption, self.media, self.location, self.contact)
        return self


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
    type: MessageType = Field(MessageType.TEXT, description="with action=message")
    caption: str | None = Field(None, max_length=1024, description="with action=message")
    media: MediaInput | None = Field(None, description="with action=message and a media type")
    location: LocationInput | None = Field(None, description="with action=message, type location")
    contact: ContactInput | None = Field(None, description="with action=message, type contact")

    @model_validator(mode="after")
    def _parts(self) -> SimulateRequest:
        if self.action == "message" and self.type is not MessageType.TEXT:
            check_message_parts(self.type, self.text, self.caption, self.media, self.location, self.contact)
        elif any(v is not None for v in (self.caption, self.media, self.location, self.contact)):
            raise ValueError("caption, media, location and contact go with action=message and their type")
        return self


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
