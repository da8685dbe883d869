"""A session: its settings (pacing, proxy, webhooks), what creates and updates it, the snapshot
itself, and its QR and pairing codes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from watui.machine import EventType, Status
from watui.models.base import NAME_PATTERN, NAME_RULES, PhoneNumber, Strict, _check_name
from watui.models.urls import (
    PROXY_PATTERN,
    PROXY_RULES,
    _check_proxy_field,
    _check_secret,
    mask_url,
)


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
