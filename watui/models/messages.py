"""Chat messages of every type: what a send and a simulate bring, media descriptors, stored
messages, their statuses and statistics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, ValidationInfo, model_validator

from watui.models.base import PhoneNumber, Strict, utcnow


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
