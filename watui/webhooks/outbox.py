"""The outbox, all its SQL: rows queued with each event, picked when due, listed per session.

The row that says "deliver event 42 to this URL" is written by a store ``event_hook`` in the
same transaction as event 42 itself, so an event in the log is always queued for delivery, and
a ``kill -9`` at any point loses nothing.

Every statement is written once, with ``?`` placeholders, and put in the store's dialect by
:func:`watui.stores.dialects.sql_for` (the one place the SQL is picked).

**Claims (PostgreSQL: a cluster).** On SQLite one process owns the outbox and its dispatcher
keeps the rows it is sending out of its picks. On PostgreSQL several nodes share it, so a pick
*claims* the due rows it returns: one ``UPDATE`` over rows chosen ``FOR UPDATE SKIP LOCKED``
sets ``claimed_by`` (the node's instance, ``node/instance``) and ``claimed_until`` (a lease a little longer than one
request). Another node's pick skips rows under a live claim, so a row is sent by one node at a
time; the outcome is recorded only while the claim is still the node's own, and clears it.
A node that dies leaves its claims to expire, then another node claims the rows and sends them
again, with the same ``webhook-id``: at least once, across node deaths. Claim times are the
database's clock (``clock_timestamp()``), so nodes' clocks cannot disagree about a lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from watui.machine import EventType
from watui.models import mask_url
from watui.stores.base import StoreProtocol
from watui.stores.dialects import SqlDialect, sql_for
from watui.stores.group_commit import Statement
from watui.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryPage,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """Who picks (PostgreSQL only): this node (in a cluster, its instance: ``node/instance``),
    and how long its claim on a row lasts."""

    node_id: str
    lease: float
    """Seconds: longer than a request's timeout, so a live node's claim never lapses mid-send."""


def enqueue(store: StoreProtocol, event_id: int, session_id: str, url: str, secret: str | None,
            now: datetime) -> Statement:
    d = sql_for(store)
    at = d.ts(now)
    return (
        d.sql("INSERT INTO webhook_deliveries(event_id, session_id, webhook_id, url, secret, status,"
              " attempts, next_attempt_at, created_at) VALUES (?,?,?,?,?,'pending',0,?,?)"),
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
    event_ts: datetime
    payload: str


_DUE_COLUMNS = (
    "d.id, d.event_id, d.session_id, d.webhook_id, d.url, d.secret, d.attempts, d.created_at,"
    " e.type, e.owner, e.ts, e.payload"
)


def _due_where(d: SqlDialect) -> str:
    """Due rows, leaving out busy ones: ``now, skip ids, sessions, urls, owners``."""
    return (
        "d.status = 'pending' AND d.next_attempt_at <= ?"
        f" AND {d.not_member('d.id')} AND {d.not_member('d.session_id')}"
        f" AND {d.not_member('d.url')} AND {d.not_member('e.owner')}"
    )


_UNCLAIMED = "(d.claimed_until IS NULL OR d.claimed_until <= clock_timestamp())"
"""PostgreSQL: no node holds a live claim on the row."""


def _pick_sql(d: SqlDialect) -> str:
    if not d.postgres:
        return (
            f"SELECT {_DUE_COLUMNS} FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
            f" WHERE {_due_where(d)} ORDER BY d.next_attempt_at, d.id LIMIT ?"
        )
    return d.sql(
        "WITH due AS ("
        " SELECT d.id FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
        f" WHERE {_due_where(d)} AND {_UNCLAIMED}"
        " ORDER BY d.next_attempt_at, d.id LIMIT ? FOR UPDATE OF d SKIP LOCKED)"
        " UPDATE webhook_deliveries AS d"
        " SET claimed_by = ?, claimed_until = clock_timestamp() + make_interval(secs => ?)"
        " FROM due, events AS e WHERE d.id = due.id AND e.id = d.event_id"
        f" RETURNING {_DUE_COLUMNS}, d.next_attempt_at"
    )


async def pick(store: StoreProtocol, now: datetime, *, skip_ids: list[int], skip_sessions: list[str],
               skip_urls: list[str], skip_owners: list[str], limit: int, claim: Claim) -> list[Due]:
    """Due rows, oldest first, leaving out rows, sessions, URLs and owners that are busy (and,
    on PostgreSQL, rows another node holds), claimed for ``claim.node_id`` on PostgreSQL."""
    d = sql_for(store)
    params: list[object] = [d.ts(now), d.values(skip_ids), d.values(skip_sessions), d.values(skip_urls),
                            d.values(skip_owners), limit]
    if d.postgres:
        params += [claim.node_id, claim.lease]
    rows = await store.fetchall(_pick_sql(d), params)
    if d.postgres:  # RETURNING keeps no order
        rows.sort(key=lambda r: (r[12], r[0]))
    return [Due(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _when(d, r[7]), r[8], r[9], _when(d, r[10]), r[11])
            for r in rows]


def _when(d: SqlDialect, value: str | datetime) -> datetime:
    when = d.read_ts(value)
    assert when is not None
    return when


async def release(store: StoreProtocol, ids: list[int], claim: Claim) -> None:
    """Give back claims on rows this node picked but will not send now (PostgreSQL; on SQLite
    there are no claims and nothing to do)."""
    d = sql_for(store)
    if not d.postgres or not ids:
        return
    await store.fetchall(d.sql(
        "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL"
        f" WHERE {d.member('id')} AND claimed_by = ? RETURNING id"
    ), (d.values(ids), claim.node_id))


async def release_all(store: StoreProtocol, claim: Claim) -> None:
    """Give back every claim this node holds (PostgreSQL), when its dispatcher closes."""
    d = sql_for(store)
    if d.postgres:
        await store.fetchall(d.sql(
            "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL"
            " WHERE claimed_by = ? AND status = 'pending' RETURNING id"
        ), (claim.node_id,))


async def next_due(store: StoreProtocol, now: datetime) -> datetime | None:
    d = sql_for(store)
    rows = await store.fetchall(d.sql(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at > ?"
    ), (d.ts(now),))
    return d.read_ts(rows[0][0]) if rows else None


async def pending_count(store: StoreProtocol) -> int:
    rows = await store.fetchall("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
    return int(rows[0][0])


def _expired_where(d: SqlDialect) -> str:
    where = f" WHERE status = 'pending' AND created_at <= ? AND {d.not_member('id')}"
    if d.postgres:  # not a row another node is sending right now
        where += " AND (claimed_until IS NULL OR claimed_until <= clock_timestamp())"
    return where


async def expire(store: StoreProtocol, cutoff: datetime, in_flight: list[int]) -> None:
    """Mark dead the pending rows queued before ``cutoff`` (not the ones being sent)."""
    d = sql_for(store)
    params = (d.ts(cutoff), d.values(in_flight))
    where = _expired_where(d)
    if not await store.fetchall(d.sql("SELECT 1 FROM webhook_deliveries" + where + " LIMIT 1"), params):
        return  # the usual case: no write, no fsync
    await store.write(statements=[(d.sql(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL,"
        " last_error = COALESCE(last_error, 'expired before any attempt')" + where
    ), params)])


def record(store: StoreProtocol, due: Due, now: datetime, *, status: DeliveryStatus, next_at: datetime | None,
           status_code: int | None, error: str | None, duration_ms: float, claim: Claim) -> list[Statement]:
    """One attempt's outcome: the row's new state and a line in the attempts log. On
    PostgreSQL the row changes only while ``claim`` still holds it (a node that lost its claim,
    paused past the lease, cannot overwrite the outcome of the node that took the row over),
    and the claim is cleared."""
    d = sql_for(store)
    attempt = due.attempts + 1
    update = (
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
        " last_status_code = ?, last_error = ?, delivered_at = ?"
    )
    params: tuple[object, ...] = (
        status.value, attempt, d.ts(next_at), status_code, error,
        d.ts(now) if status is DeliveryStatus.DELIVERED else None, due.id,
    )
    if d.postgres:
        update += ", claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?"
        params += (claim.node_id,)
    else:
        update += " WHERE id = ?"
    return [
        (d.sql(update), params),
        (d.sql("INSERT INTO webhook_attempts(delivery_id, attempt, ts, status_code, error, duration_ms)"
               " VALUES (?,?,?,?,?,?)"),
         (due.id, attempt, d.ts(now), status_code, error, round(duration_ms, 3))),
    ]


def pull_forward(store: StoreProtocol, url: str, now: datetime) -> Statement:
    """A receiver is back: everything waiting for it is due now."""
    d = sql_for(store)
    return (
        d.sql("UPDATE webhook_deliveries SET next_attempt_at = ?"
              " WHERE status = 'pending' AND url = ? AND next_attempt_at > ?"),
        (d.ts(now), url, d.ts(now)),
    )


async def list_deliveries(
    store: StoreProtocol, session_id: str, *, limit: int = 50, offset: int = 0
) -> WebhookDeliveryPage:
    """A session's deliveries, newest first, each with its attempts log."""
    d = sql_for(store)
    rows = await store.fetchall(d.sql(
        "SELECT d.id, d.session_id, d.event_id, e.type, d.webhook_id, d.url, d.status, d.attempts,"
        " d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at"
        " FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
        " WHERE d.session_id = ? ORDER BY d.id DESC LIMIT ? OFFSET ?"
    ), (session_id, limit, offset))
    total = await store.fetchall(
        d.sql("SELECT COUNT(*) FROM webhook_deliveries WHERE session_id = ?"), (session_id,)
    )
    logs: dict[int, list[WebhookAttempt]] = {}
    if rows:
        for a in await store.fetchall(d.sql(
            "SELECT delivery_id, attempt, ts, status_code, error, duration_ms FROM webhook_attempts"
            f" WHERE {d.member('delivery_id')} ORDER BY delivery_id, attempt, id"
        ), (d.values([r[0] for r in rows]),)):
            logs.setdefault(a[0], []).append(
                WebhookAttempt(attempt=a[1], at=a[2], status_code=a[3], error=a[4], duration_ms=a[5])
            )
    deliveries = [
        WebhookDelivery(
            id=r[0], session_id=r[1], event_id=r[2], event_type=EventType(r[3]), webhook_id=r[4],
            url=mask_url(r[5]), status=DeliveryStatus(r[6]), attempts=r[7],
            next_attempt_at=d.read_ts(r[8]), last_status_code=r[9], last_error=r[10],
            created_at=r[11], delivered_at=d.read_ts(r[12]), attempt_log=logs.get(r[0], []),
        )
        for r in rows
    ]
    return WebhookDeliveryPage(deliveries=deliveries, total=int(total[0][0]))
