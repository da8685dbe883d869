"""What the deliveries route shows: a delivery, its attempts, and the caller-safe view of both."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from watui.machine import EventType


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """The receiver refused it (a 4xx other than 408/429), or the target is forbidden: not retried."""
    DEAD = "dead"
    """Retried until ``webhook_max_age`` without success, or undeliverable (its reason says why)."""


class WebhookAttempt(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(None, description="null when no response came (refused, timeout)")
    error: str | None = None
    duration_ms: float


class WebhookDelivery(BaseModel):
    id: int
    session_id: str
    event_id: int
    event_type: EventType
    webhook_id: str = Field(..., description="the `webhook-id` header, the same on every retry")
    url: str = Field(..., description="a password in it is shown as `***`")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(
        None, description="a short reason; the start of the receiver's answer only for admin keys"
    )
    created_at: datetime
    delivered_at: datetime | None = None
    attempt_log: list[WebhookAttempt] = Field(default_factory=list, description="oldest first")


class WebhookDeliveryPage(BaseModel):
    deliveries: list[WebhookDelivery] = Field(..., description="newest first")
    total: int


SHORT_REASON = 120


def public_reason(error: str | None) -> str | None:
    """An attempt's error as a non-admin caller may see it: the status line of an HTTP answer
    without the receiver's body (which may be an internal page), or the short network reason."""
    if error is None:
        return None
    if error.startswith("HTTP "):
        return error.split(":", 1)[0]
    return error[:SHORT_REASON]


def redacted(page: WebhookDeliveryPage) -> WebhookDeliveryPage:
    """``page`` with every error reduced to :func:`public_reason`."""
    return page.model_copy(update={"deliveries": [
        d.model_copy(update={
            "last_error": public_reason(d.last_error),
            "attempt_log": [a.model_copy(update={"error": public_reason(a.error)}) for a in d.attempt_log],
        })
        for d in page.deliveries
    ]})
