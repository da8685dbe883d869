"""The outbox, all its SQL: rows queued with each event, picked when due, listed per session.

The row that says "deliver event 42 to this URL" is written by a store ``event_hook`` in the
same transaction as event 42 itself, so an event in the log is always queued for delivery, and
a ``kill -9`` at any point loses nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from watui.machine import EventType
from watui.models import mask_url
from watui.store import Statement, Store
from watui.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryPage,
)


def ts(value: datetime) -> str:
    # The store's format: sortable as text because every value is UTC with microseconds.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def enqueue(event_id: int, session_id: str, url: str, secret: str | None, now: datetime) -> Statement:
    at = ts(now)
    return (
        "INSERT INTO webhook_deliveries(event_id, session_id, webhook_id, url, secret, status,"
        " attempts, next_attempt_at, created_at) VALUES (?,?,?,?,?,'pending',0,?,?)",
        (event_id, session_id, "msg_" + uuid.uuid4().hex, url, secret, at, at),
    )


@dataclass(slots=True)
class Due:
    """A pending row with its event, ready to send."""

    id: int
    event_id: int
    session_id: str
    webhook_id: str
    url: str
    secret: str | None
    attempts: int
    created_at: datetime
    event_type: str
    owner: str
    event_ts: str
    payload: str


PICK = (
    "SELECT d.id, d.event_id, d.session_id, d.webhook_id, d.url, d.secret, d.attempts, d.created_at,"
    " e.type, e.owner, e.ts, e.payload"
    " FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
    " AND d.id NOT IN (SELECT value FROM json_each(?))"
    " AND d.session_id NOT IN (SELECT value FROM json_each(?))"
    " AND d.url NOT IN (SELECT value FROM json_each(?))"
    " AND e.owner NOT IN (SELECT value FROM json_each(?))"
    " ORDER BY d.next_attempt_at, d.id LIMIT ?"
)


async def pick(store: Store, now: datetime, *, skip_ids: list[int], skip_sessions: list[str],
               skip_urls: list[str], skip_owners: list[str], limit: int) -> list[Due]:
    """Due rows, oldest first, leaving out rows, sessions, URLs and owners that are busy."""
    rows = await store.fetchall(PICK, (
        ts(now), json.dumps(skip_ids), json.dumps(skip_sessions), json.dumps(skip_urls),
        json.dumps(skip_owners), limit,
    ))
    return [Due(r[0], r[1], r[2], r[3], r[4], r[5], r[6], datetime.fromisoformat(r[7]),
                r[8], r[9], r[10], r[11]) for r in rows]


async def next_due(store: Store, now: datetime) -> datetime | None:
    rows = await store.fetchall(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at > ?",
        (ts(now),),
    )
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None


async def pending_count(store: Store) -> int:
    rows = await store.fetchall("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
    return int(rows[0][0])


_EXPIRED = " WHERE status = 'pending' AND created_at <= ? AND id NOT IN (SELECT value FROM json_each(?))"


async def expire(store: Store, cutoff: datetime, in_flight: list[int]) -> None:
    """Mark dead the pending rows queued before ``cutoff`` (not the ones being sent)."""
    params = (ts(cutoff), json.dumps(in_flight))
    if not await store.fetchall("SELECT 1 FROM webhook_deliveries" + _EXPIRED + " LIMIT 1", params):
        return  # the usual case: no write, no fsync
    await store.write(statements=[(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL,"
        " last_error = COALESCE(last_error, 'expired before any attempt')" + _EXPIRED,
        params,
    )])


def record(due: Due, now: datetime, *, status: DeliveryStatus, next_at: datetime | None,
           status_code: int | None, error: str | None, duration_ms: float) -> list[Statement]:
    """One attempt's outcome: the row's new state and a line in the attempts log."""
    attempt = due.attempts + 1
    return [
        ("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
         " last_status_code = ?, last_error = ?, delivered_at = ? WHERE id = ?",
         (status.value, attempt, ts(next_at) if next_at else None, status_code, error,
          ts(now) if status is DeliveryStatus.DELIVERED else None, due.id)),
        ("INSERT INTO webhook_attempts(delivery_id, attempt, ts, status_code, error, duration_ms)"
         " VALUES (?,?,?,?,?,?)",
         (due.id, attempt, ts(now), status_code, error, round(duration_ms, 3))),
    ]


def pull_forward(url: str, now: datetime) -> Statement:
    """A receiver is back: everything waiting for it is due now."""
    return (
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE status = 'pending' AND url = ? AND next_attempt_at > ?",
        (ts(now), url, ts(now)),
    )


async def list_deliveries(
    store: Store, session_id: str, *, limit: int = 50, offset: int = 0
) -> WebhookDeliveryPage:
    """A session's deliveries, newest first, each with its attempts log."""
    rows = await store.fetchall(
        "SELECT d.id, d.session_id, d.event_id, e.type, d.webhook_id, d.url, d.status, d.attempts,"
        " d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at"
        " FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
        " WHERE d.session_id = ? ORDER BY d.id DESC LIMIT ? OFFSET ?",
        (session_id, limit, offset),
    )
    total = await store.fetchall(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE session_id = ?", (session_id,)
    )
    logs: dict[int, list[WebhookAttempt]] = {}
    if rows:
        ids = json.dumps([r[0] for r in rows])
        for a in await store.fetchall(
            "SELECT delivery_id, attempt, ts, status_code, error, duration_ms FROM webhook_attempts"
            " WHERE delivery_id IN (SELECT value FROM json_each(?)) ORDER BY delivery_id, attempt, id",
            (ids,),
        ):
            logs.setdefault(a[0], []).append(
                WebhookAttempt(attempt=a[1], at=a[2], status_code=a[3], error=a[4], duration_ms=a[5])
            )
    deliveries = [
        WebhookDelivery(
            id=r[0], session_id=r[1], event_id=r[2], event_type=EventType(r[3]), webhook_id=r[4],
            url=mask_url(r[5]), status=DeliveryStatus(r[6]), attempts=r[7],
            next_attempt_at=parse_ts(r[8]), last_status_code=r[9], last_error=r[10],
            created_at=r[11], delivered_at=parse_ts(r[12]), attempt_log=logs.get(r[0], []),
        )
        for r in rows
    ]
    return WebhookDeliveryPage(deliveries=deliveries, total=int(total[0][0]))
