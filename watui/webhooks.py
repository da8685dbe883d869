"""Webhooks: a persisted outbox, delivered by one dispatcher task (Standard Webhooks).

Why an outbox: the row that says "deliver event 42 to this URL" is written by a store
``event_hook`` in the same transaction as event 42 itself. An event that is in the log is
therefore always queued for delivery, and a ``kill -9`` at any point loses nothing: rows that
were in flight are simply still ``pending`` at the next start and go out again with the same
``webhook-id`` (receivers dedupe on it, as the specification asks).

Why one dispatcher task and not one per session: the engine never waits on a receiver. The
dispatcher picks due rows in batches, posts them through one shared ``httpx.AsyncClient``, and
writes each outcome (and a row in the attempts log) through the store's single writer, which
group-commits them.

Fairness: at most ``max_in_flight`` requests run at once, at most ``per_session`` for one
session and ``per_receiver`` for one URL, so a slow or dead receiver holds a few slots and
every other session's deliveries keep flowing.

Outages: a retryable failure (connection error, timeout, 408, 429, 5xx) schedules the row
again with capped exponential back-off and jitter, and also closes a per-URL *gate* for the
same kind of back-off: while a receiver is down, only one probe at a time goes to it instead of
the whole backlog. The first success re-opens the gate and pulls every waiting row for that
URL forward, so a backlog drains as soon as the receiver is back rather than when each row's
own timer happens to fire. Rows are given up (``dead``) only once ``webhook_max_age`` (over a
day by default) has passed since they were queued; other 4xx answers are final (``failed``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field
from standardwebhooks import Webhook

from watui import __version__
from watui.clock import Clock
from watui.config import Settings
from watui.machine import EventType
from watui.models import Event, Session
from watui.store import Statement, Store, StoreClosed

log = logging.getLogger(__name__)

SERVER_SECRET_FILE = "webhook.secret"
RETRYABLE_STATUSES = frozenset({408, 429})
ERROR_SNIPPET = 300
"""How much of a failed response's body the attempts log keeps."""
MAX_RESPONSE_BODY = 64 * 1024
"""A response body is read (so the connection can be reused) up to this much, then dropped."""


def _ts(value: datetime) -> str:
    # The store's format: sortable as text because every value is UTC with microseconds.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def load_or_create_secret(path: Path) -> str:
    """The server-wide secret (for the default URL), created 0600 on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = new_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    try:
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    log.warning("created the server-wide webhook secret in %s", path)
    return secret


# ==================================================================== models


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """The receiver refused it (a 4xx other than 408/429): not retried."""
    DEAD = "dead"
    """Retried until ``webhook_max_age`` without success."""


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
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    attempt_log: list[WebhookAttempt] = Field(default_factory=list, description="oldest first")


class WebhookDeliveryPage(BaseModel):
    deliveries: list[WebhookDelivery] = Field(..., description="newest first")
    total: int


def _public_url(url: str) -> str:
    """The URL without a password in it, for listings."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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
            url=_public_url(r[5]), status=DeliveryStatus(r[6]), attempts=r[7],
            next_attempt_at=_parse_ts(r[8]), last_status_code=r[9], last_error=r[10],
            created_at=r[11], delivered_at=_parse_ts(r[12]), attempt_log=logs.get(r[0], []),
        )
        for r in rows
    ]
    return WebhookDeliveryPage(deliveries=deliveries, total=int(total[0][0]))


# ==================================================================== dispatcher


@dataclass
class WebhookOptions:
    """Tuning knobs. Tests shrink the delays; production keeps the defaults."""

    base_delay: float = 1.0
    """First retry after about this long; doubles per attempt (equal jitter)."""
    max_delay: float = 3600.0
    """Retries of one delivery are never further apart than this."""
    probe_max_delay: float = 10.0
    """A receiver that is down is probed at least this often, so a backlog starts draining
    within this long of it coming back (the probe is one request, so this can be short)."""
    max_in_flight: int = 64
    per_session: int = 4
    per_receiver: int = 16
    """Concurrent requests to one URL (and the size of its connection pool)."""
    receiver_idle: float = 300.0
    """A URL's connections are closed after this long without a request."""
    poll_interval: float = 1.0
    pick_delay: float = 0.005
    """While requests run, wait this long after a wake-up before looking for more work."""
    """Longest sleep between looks at the outbox (a safety net: commits wake it at once)."""
    sweep_interval: float = 60.0
    """How often rows past ``webhook_max_age`` that never got a last attempt are marked dead."""
    shutdown_grace: float = 2.0
    """On close, requests still running after this long are cancelled (and retried next start)."""
    max_age: float | None = None
    """Defaults to ``Settings.webhook_max_age``."""
    timeout: float | None = None
    """Defaults to ``Settings.webhook_timeout``; the whole request, not per read."""

    def backoff(self, n: int, rng: random.Random, cap: float | None = None) -> float:
        """The wait before retry ``n`` (1 = the first retry)."""
        cap = self.max_delay if cap is None else cap
        ceiling = min(cap, self.base_delay * 2 ** min(max(n - 1, 0), 60))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class _Receiver:
    """What the dispatcher knows about one URL."""

    origin: str = ""
    """scheme://host:port: URLs that share it are most likely one server."""
    in_flight: int = 0
    failures: int = 0
    """Consecutive retryable failures; while > 0, one probe at a time."""
    closed_until: datetime | None = None
    client: httpx.AsyncClient | None = None
    """Its own small connection pool: httpcore scans a whole pool (polling each socket) on
    every request, which at 64 connections cost 80% of the throughput measured with 8."""
    last_used: float = 0.0

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()


@dataclass(slots=True)
class _Due:
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


@dataclass
class _Outcome:
    status_code: int | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None
    duration_ms: float = 0.0
    extra: list[Statement] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_PICK = (
    "SELECT d.id, d.event_id, d.session_id, d.webhook_id, d.url, d.secret, d.attempts, d.created_at,"
    " e.type, e.owner, e.ts, e.payload"
    " FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
    " AND d.id NOT IN (SELECT value FROM json_each(?))"
    " AND d.session_id NOT IN (SELECT value FROM json_each(?))"
    " AND d.url NOT IN (SELECT value FROM json_each(?))"
    " ORDER BY d.next_attempt_at, d.id LIMIT ?"
)


class WebhookDispatcher:
    """Queues deliveries with each event's transaction and posts them in the background."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        sessions: Mapping[str, Session],
        clock: Clock,
        options: WebhookOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.options = options or WebhookOptions()
        self._sessions = sessions
        self._clock = clock
        self._transport = transport
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._queued = False
        self._stopping = False
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        """Every attempt not yet recorded, by row id: the picks skip these rows."""
        self._sending = 0
        """Attempts whose HTTP request is still running (``max_in_flight`` caps this)."""
        self._per_session: Counter[str] = Counter()
        self._receivers: dict[str, _Receiver] = {}
        self._signers: dict[str, Webhook] = {}
        self._server_secret: str | None = None
        self._last_sweep: datetime | None = None
        self.delivered = 0
        """Successful deliveries since start (the benchmark reads it)."""
        self.attempted = 0
        store.event_hooks.append(self._enqueue)
        store.on_commit.append(self._on_commit)

    # ---------------------------------------------------------------- the outbox

    def _enqueue(self, event: Event) -> Iterable[Statement]:
        """The store's event hook: the outbox row for ``event``, if it is to be delivered."""
        session = self._sessions.get(event.session_id)
        if session is None:
            return ()
        conf = session.settings
        url = str(conf.webhook_url) if conf.webhook_url is not None else self.settings.webhook_url
        if not url or (conf.webhook_events is not None and event.type not in conf.webhook_events):
            return ()
        # The session's own secret for its own URL; NULL means the server-wide secret.
        secret = conf.webhook_secret if conf.webhook_url is not None else None
        now = _ts(self._clock.now())
        self._queued = True
        return ((
            "INSERT INTO webhook_deliveries(event_id, session_id, webhook_id, url, secret, status,"
            " attempts, next_attempt_at, created_at) VALUES (?,?,?,?,?,'pending',0,?,?)",
            (event.id, event.session_id, "msg_" + uuid.uuid4().hex, url, secret, now, now),
        ),)

    def _on_commit(self, events: list[Event]) -> None:
        if self._queued:
            self._queued = False
            self._wake.set()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._task is not None:
            return
        if self.settings.webhook_url:
            self._server_secret = load_or_create_secret(self.settings.data_dir / SERVER_SECRET_FILE)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="watui-webhooks")

    async def aclose(self) -> None:
        """Stop picking, give running requests a short grace, cancel the rest (they stay
        pending and go out again, with the same ``webhook-id``, after the next start)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        running = list(self._in_flight.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self.options.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for receiver in self._receivers.values():
            await receiver.close()
        # The event hook stays: an event written after this still gets its outbox row, and
        # goes out after the next start.

    def wake(self) -> None:
        """Look at the outbox now (after changing ``options``, say)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def pending_count(self) -> int:
        rows = await self.store.fetchall("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
        return int(rows[0][0])

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a commit that lands while we look still wakes us.
            self._wake.clear()
            try:
                more = await self._pick_and_launch()
                if more:
                    await asyncio.sleep(0)
                    continue
                await self._maybe_sweep()
                timeout = await self._idle_timeout()
            except StoreClosed:
                return
            except Exception:
                log.exception("the webhook dispatcher failed; retrying")
                timeout = self.options.poll_interval
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if self._sending and self.options.pick_delay:
                # Requests are finishing one by one: let a few more slots free up so one query
                # launches several deliveries (a pick costs about a millisecond).
                await asyncio.sleep(self.options.pick_delay)

    def _blocked_urls(self, now: datetime) -> list[str]:
        cap = self.options.per_receiver
        blocked = []
        for url, r in self._receivers.items():
            if (
                r.in_flight >= cap
                or (r.closed_until is not None and r.closed_until > now)
                or (r.failures and r.in_flight >= 1)
            ):
                blocked.append(url)
        return blocked

    async def _pick_and_launch(self) -> bool:
        """Start deliveries for due rows; True if there may be more to start right away."""
        free = self.options.max_in_flight - self._sending
        if free <= 0:
            return False
        now = self._clock.now()
        busy = [s for s, n in self._per_session.items() if n >= self.options.per_session]
        limit = free * 2
        rows = await self.store.fetchall(
            _PICK,
            (_ts(now), json.dumps(list(self._in_flight)), json.dumps(busy),
             json.dumps(self._blocked_urls(now)), limit),
        )
        launched = 0
        for r in rows:
            if self._sending >= self.options.max_in_flight or self._stopping:
                break
            due = _Due(r[0], r[1], r[2], r[3], r[4], r[5], r[6], datetime.fromisoformat(r[7]),
                       r[8], r[9], r[10], r[11])
            if due.id in self._in_flight or self._per_session[due.session_id] >= self.options.per_session:
                continue
            receiver = self._receivers.get(due.url)
            if receiver is None:
                parts = urlsplit(due.url)
                receiver = self._receivers[due.url] = _Receiver(origin=f"{parts.scheme}://{parts.netloc}")
            if receiver.in_flight >= self.options.per_receiver or (receiver.failures and receiver.in_flight):
                continue
            if receiver.closed_until is not None and receiver.closed_until > now:
                continue
            self._per_session[due.session_id] += 1
            receiver.in_flight += 1
            self._sending += 1
            self._in_flight[due.id] = asyncio.get_running_loop().create_task(
                self._attempt(due), name=f"watui-webhook-{due.id}"
            )
            launched += 1
        return len(rows) == limit and launched > 0 and self._sending < self.options.max_in_flight

    async def _idle_timeout(self) -> float:
        """Seconds until something could become due: a scheduled retry or a gate opening."""
        now = self._clock.now()
        timeout = self.options.poll_interval
        rows = await self.store.fetchall(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries"
            " WHERE status = 'pending' AND next_attempt_at > ?",
            (_ts(now),),
        )
        upcoming = [datetime.fromisoformat(rows[0][0])] if rows and rows[0][0] else []
        upcoming += [r.closed_until for r in self._receivers.values() if r.closed_until and r.closed_until > now]
        for when in upcoming:
            timeout = min(timeout, max(0.0, (when - now).total_seconds()))
        return max(timeout, 0.001)

    async def _maybe_sweep(self) -> None:
        now = self._clock.now()
        if self._last_sweep is not None and (now - self._last_sweep).total_seconds() < self.options.sweep_interval:
            return
        self._last_sweep = now
        idle_since = time.monotonic() - self.options.receiver_idle
        for url, receiver in list(self._receivers.items()):
            if receiver.in_flight == 0 and receiver.last_used < idle_since and not receiver.failures:
                del self._receivers[url]
                await receiver.close()
        # A backstop for rows a closed gate keeps from their last attempt; the grace lets a row
        # whose final attempt is due right at its deadline make it.
        gate = min(self.options.probe_max_delay, self.options.max_delay)
        grace = 2 * gate + self.options.poll_interval
        cutoff = _ts(now - timedelta(seconds=self._max_age + grace))
        expired = " WHERE status = 'pending' AND created_at <= ? AND id NOT IN (SELECT value FROM json_each(?))"
        params = (cutoff, json.dumps(list(self._in_flight)))
        if not await self.store.fetchall("SELECT 1 FROM webhook_deliveries" + expired + " LIMIT 1", params):
            return  # the usual case: no write, no fsync
        await self.store.write(statements=[(
            "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL,"
            " last_error = COALESCE(last_error, 'expired before any attempt')" + expired,
            params,
        )])

    @property
    def _max_age(self) -> float:
        return self.options.max_age if self.options.max_age is not None else self.settings.webhook_max_age

    @property
    def _timeout(self) -> float:
        return self.options.timeout if self.options.timeout is not None else self.settings.webhook_timeout

    # ---------------------------------------------------------------- one attempt

    def _body(self, due: _Due) -> str:
        event = Event(
            id=due.event_id, type=EventType(due.event_type), session_id=due.session_id,
            owner=due.owner, timestamp=datetime.fromisoformat(due.event_ts), payload=json.loads(due.payload),
        )
        data = event.data()
        body: dict[str, Any] = {"id": event.id, "type": event.type.value}
        body.update((k, v) for k, v in data.items() if k not in body)
        if event.type is EventType.QR and isinstance(data.get("qr_text"), str):
            # As on the SSE stream: the PNG alongside the raw payload.
            from watui.qr import png_data_url

            body["qr_data"] = png_data_url(data["qr_text"])
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)

    def _signer(self, due: _Due) -> Webhook:
        session = self._sessions.get(due.session_id)
        secret = due.secret
        if session is not None and session.settings.webhook_url is not None and \
                str(session.settings.webhook_url) == due.url and session.settings.webhook_secret:
            secret = session.settings.webhook_secret  # a rotated secret applies to pending rows too
        if secret is None:
            if self._server_secret is None:
                self._server_secret = load_or_create_secret(self.settings.data_dir / SERVER_SECRET_FILE)
            secret = self._server_secret
        signer = self._signers.get(secret)
        if signer is None:
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def _post(self, due: _Due, receiver: _Receiver) -> _Outcome:
        receiver.last_used = time.monotonic()
        if receiver.client is None:
            cap = self.options.per_receiver
            receiver.client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,  # a redirect is an answer, not an instruction to follow
                limits=httpx.Limits(max_connections=cap, max_keepalive_connections=cap),
                headers={"user-agent": f"watui/{__version__} (Standard Webhooks)",
                         "content-type": "application/json"},
            )
        client = receiver.client
        timeout = self._timeout
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            if due.event_type == EventType.QR.value:
                body = await asyncio.to_thread(self._body, due)  # drawing the PNG takes ~60 ms
            else:
                body = self._body(due)
            sent_at = datetime.fromtimestamp(int(time.time()), UTC)  # real time: receivers check it
            headers = {
                "webhook-id": due.webhook_id,
                "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": self._signer(due).sign(due.webhook_id, sent_at, body),
            }
            async with asyncio.timeout(timeout):
                async with client.stream(
                    "POST", due.url, content=body.encode(), headers=headers, timeout=timeout
                ) as response:
                    outcome.status_code = response.status_code
                    head = await _read_some(response)
                    if not outcome.ok:
                        outcome.retryable = response.status_code in RETRYABLE_STATUSES or response.status_code >= 500
                        outcome.retry_after = _retry_after(response.headers.get("retry-after"))
                        text = head[:ERROR_SNIPPET].decode(errors="replace").strip()
                        outcome.error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
        except (TimeoutError, httpx.TimeoutException):
            outcome.error = f"timed out after {timeout:g} s"
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            outcome.error, outcome.retryable = f"{type(exc).__name__}: {exc}", False
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bug or a bad row: log it, keep the row, retry later
            log.exception("webhook delivery %s failed unexpectedly", due.webhook_id)
            outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        if outcome.error is not None:
            outcome.error = outcome.error[:ERROR_SNIPPET]
        return outcome

    async def _attempt(self, due: _Due) -> None:
        receiver = self._receivers[due.url]
        sending = True
        try:
            outcome = await self._post(due, receiver)
            self.attempted += 1
            statements = self._record(due, receiver, outcome)
            # The request is over: its slots go to the next delivery while this one's outcome
            # waits for its commit (an fsync), so throughput does not hang on disk latency.
            sending = False
            self._release(due, receiver)
            try:
                await self.store.write(statements=statements)
            except StoreClosed:
                log.warning("store closed before delivery %s was recorded; it will go out again", due.webhook_id)
            except Exception:  # the row stays pending: it goes out again, same webhook-id
                log.exception("recording delivery %s failed", due.webhook_id)
            if outcome.ok:
                self.delivered += 1
        finally:
            if sending:
                self._release(due, receiver)
            # Out of the picks' exclusion list only once the outcome has committed, so the row
            # cannot be picked twice.
            del self._in_flight[due.id]
            self._wake.set()

    def _release(self, due: _Due, receiver: _Receiver) -> None:
        self._sending -= 1
        receiver.in_flight -= 1
        self._per_session[due.session_id] -= 1
        if self._per_session[due.session_id] <= 0:
            del self._per_session[due.session_id]
        self._wake.set()

    def _record(self, due: _Due, receiver: _Receiver, outcome: _Outcome) -> list[Statement]:
        """The outcome of one attempt as statements, and the receiver's gate updated."""
        now = self._clock.now()
        attempt = due.attempts + 1
        statements: list[Statement] = [(
            "INSERT INTO webhook_attempts(delivery_id, attempt, ts, status_code, error, duration_ms)"
            " VALUES (?,?,?,?,?,?)",
            (due.id, attempt, _ts(now), outcome.status_code, outcome.error, round(outcome.duration_ms, 3)),
        )]
        next_at: str | None = None
        answered = outcome.status_code is not None and (outcome.ok or not outcome.retryable)
        if answered:
            if receiver.failures:
                # The receiver is back: everything waiting for it is due now.
                statements.append((
                    "UPDATE webhook_deliveries SET next_attempt_at = ?"
                    " WHERE status = 'pending' AND url = ? AND next_attempt_at > ?",
                    (_ts(now), due.url, _ts(now)),
                ))
            receiver.failures, receiver.closed_until = 0, None
            # Its server is back, so other URLs on it may be too: probe them now rather than
            # when their own gates open (up to probe_max_delay later).
            for other in self._receivers.values():
                if other.failures and other.origin == receiver.origin:
                    other.closed_until = None
        if outcome.ok:
            status = DeliveryStatus.DELIVERED
        elif not outcome.retryable:
            status = DeliveryStatus.FAILED
        else:
            if receiver.closed_until is None or receiver.closed_until <= now:
                # Concurrent failures of one outage count once.
                receiver.failures += 1
                probe = self.options.backoff(
                    receiver.failures, self._rng, min(self.options.probe_max_delay, self.options.max_delay)
                )
                receiver.closed_until = now + timedelta(seconds=probe)
            if outcome.retry_after is not None and receiver.closed_until is not None:
                wait = timedelta(seconds=min(outcome.retry_after, self.options.max_delay))
                receiver.closed_until = max(receiver.closed_until, now + wait)
            deadline = due.created_at + timedelta(seconds=self._max_age)
            if now >= deadline:
                status = DeliveryStatus.DEAD
            else:
                status = DeliveryStatus.PENDING
                delay = self.options.backoff(attempt, self._rng)
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, self.options.max_delay))
                next_at = _ts(min(now + timedelta(seconds=delay), deadline))
        statements.insert(0, (
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_status_code = ?, last_error = ?, delivered_at = ? WHERE id = ?",
            (status.value, attempt, next_at, outcome.status_code, outcome.error,
             _ts(now) if status is DeliveryStatus.DELIVERED else None, due.id),
        ))
        return statements


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for webhooks; the back-off applies


async def _read_some(response: httpx.Response) -> bytes:
    """Read the body so the keep-alive connection goes back to the pool (a response closed
    unread is a connection thrown away); past ``MAX_RESPONSE_BODY`` give up on it instead."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(httpx.HTTPError):
        async for part in response.aiter_bytes():
            if size < ERROR_SNIPPET:
                chunks.append(part)
            size += len(part)
            if size > MAX_RESPONSE_BODY:
                break
    return b"".join(chunks)
