"""Webhooks: a persisted outbox, delivered by one dispatcher task (Standard Webhooks).

- :mod:`~watui.webhooks.models`: deliveries and attempts as the API shows them;
- :mod:`~watui.webhooks.outbox`: all the SQL (queue with each event, pick, record, list);
- :mod:`~watui.webhooks.policy`: which answers are retried and how long to wait, pure;
- :mod:`~watui.webhooks.receivers`: per-URL gates and connection pools;
- :mod:`~watui.webhooks.sender`: sign and post one delivery;
- :mod:`~watui.webhooks.dispatcher`: the loop and its fairness caps.

Where deliveries may go is :mod:`watui.webhooks.guard`'s business.
"""

from watui.webhooks.dispatcher import WebhookDispatcher
from watui.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryPage,
    public_reason,
    redacted,
)
from watui.webhooks.outbox import list_deliveries
from watui.webhooks.policy import WebhookOptions
from watui.webhooks.sender import SERVER_SECRET_FILE, load_or_create_secret, new_secret

__all__ = [
    "SERVER_SECRET_FILE",
    "DeliveryStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryPage",
    "WebhookDispatcher",
    "WebhookOptions",
    "list_deliveries",
    "load_or_create_secret",
    "new_secret",
    "public_reason",
    "redacted",
]
