"""The loop: picks due rows and runs each attempt as a task, within the fairness caps.

One dispatcher task, not one per session: the engine never waits on a receiver. It picks due
rows in batches, posts them, and writes each outcome (and a line in the attempts log) through
the store's single writer, which group-commits them.

Fairness: at most ``max_in_flight`` requests at once, ``per_owner`` for one owner's sessions,
``per_session`` for one session and ``per_receiver`` for one URL; an owner with nothing in
flight may always start one, so one owner's slow receivers never hold up another owner.

Outages: a retryable failure (connection error, timeout, 408, 429, 5xx) schedules the row
again with capped exponential back-off and jitter, and also closes the URL's *gate* for the
same kind of back-off: while a receiver is down, only one probe at a time goes to it. The first
success re-opens the gate and pulls every waiting row for that URL forward. Rows are given up
(``dead``) once ``webhook_max_age`` has passed since they were queued, or at once when they
cannot be sent at all (a stored secret that cannot sign); other 4xx answers and forbidden
targets are final (``failed``).

A cluster (PostgreSQL): every node runs a dispatcher over the one outbox. Picks claim their rows
(see :mod:`watui.webhooks.outbox`), so a row goes out from one node at a time; rows this node
picked but cannot start now are given back at once, and its claims are given back when it
closes. Local commits still wake the loop, and it also looks every ``cluster_poll_interval``
for rows other nodes' commits made due or a dead node's expired claims left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from watui.clock import Clock
from watui.config import Settings
from watui.models import Event, Session
from watui.stores.base import StoreProtocol
from watui.stores.group_commit import Statement, StoreClosed
from watui.webhooks import outbox
from watui.webhooks.guard import WebhookGuard
from watui.webhooks.models import DeliveryStatus
from watui.webhooks.outbox import Due
from watui.webhooks.policy import WebhookOptions
from watui.webhooks.receivers import Receiver
from watui.webhooks.sender import SERVER_SECRET_FILE, Outcome, load_or_create_secret, post

log = logging.getLogger("watui.webhooks")


class WebhookDispatcher:
    """Queues deliveries with each event's transaction and posts them in the background."""

    def __init__(
        self,
        store: StoreProtocol,
        settings: Settings,
        *,
        sessions: Mapping[str, Session],
        clock: Clock,
        options: WebhookOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        claimant: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.claimant = claimant or settings.node_id
        """Who claims the rows this dispatcher sends (PostgreSQL): in a cluster this process's
        instance of its node id, so a second process with the same node id (refused at join,
        but still alive for a moment) never records or releases what this one sends."""
        self.options = options or WebhookOptions()
        self.guard = WebhookGuard.from_settings(settings)
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
        self._per_owner: Counter[str] = Counter()
        self._receivers: dict[str, Receiver] = {}
        self._signers: dict[str, Webhook] = {}
        self._server_secret: str | None = None
        self._last_sweep: datetime | None = None
        self.delivered = 0
        """Successful deliveries since start (the benchmark reads it)."""
        self.attempted = 0
        self.outcomes: Counter[str] = Counter()
        """Attempts by outcome since start: delivered, retry, failed, dead (for /metrics)."""
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
        self._queued = True
        return (outbox.enqueue(self.store, event.id, event.session_id, url, secret, self._clock.now()),)

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
        if not self.store.closed:
            # Cancelled requests may have reached their receiver or not: another node sends
            # them again now rather than after the claim expires (at least once).
            try:
                await outbox.release_all(self.store, self._claim)
            except Exception as exc:  # the claims expire by themselves
                log.warning("could not give back webhook claims on close: %s", exc)
        # The event hook stays: an event written after this still gets its outbox row, and
        # goes out after the next start.

    def wake(self) -> None:
        """Look at the outbox now (after changing ``options``, say)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def pending_count(self) -> int:
        return await outbox.pending_count(self.store)

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

    def _full(self) -> bool:
        return self._sending >= self.options.max_in_flight

    def _may_launch(self, owner: str) -> bool:
        """The owner is under its own cap, and either a slot is free or it has nothing in
        flight (an owner that waits for nobody's slots but its own)."""
        held = self._per_owner[owner]
        return held < self.options.per_owner and (held == 0 or not self._full())

    async def _pick_and_launch(self) -> bool:
        """Start deliveries for due rows; True if there may be more to start right away."""
        now = self._clock.now()
        full = self._full()
        busy_owners = [o for o, n in self._per_owner.items() if n > 0 and (full or n >= self.options.per_owner)]
        busy_sessions = [s for s, n in self._per_session.items() if n >= self.options.per_session]
        blocked_urls = [u for u, r in self._receivers.items() if r.blocked(now, self.options.per_receiver)]
        limit = max(self.options.max_in_flight - self._sending, 8) * 2
        rows = await outbox.pick(
            self.store, now, skip_ids=list(self._in_flight), skip_sessions=busy_sessions,
            skip_urls=blocked_urls, skip_owners=busy_owners, limit=limit, claim=self._claim,
        )
        launched: set[int] = set()
        for due in rows:
            if self._stopping:
                break
            if (due.id in self._in_flight or not self._may_launch(due.owner)
                    or self._per_session[due.session_id] >= self.options.per_session):
                continue
            receiver = self._receivers.get(due.url)
            if receiver is None:
                parts = urlsplit(due.url)
                receiver = self._receivers[due.url] = Receiver(due.url, origin=f"{parts.scheme}://{parts.netloc}")
            if receiver.blocked(now, self.options.per_receiver):
                continue
            self._per_session[due.session_id] += 1
            self._per_owner[due.owner] += 1
            receiver.in_flight += 1
            self._sending += 1
            self._in_flight[due.id] = asyncio.get_running_loop().create_task(
                self._attempt(due, receiver), name=f"watui-webhook-{due.id}"
            )
            launched.add(due.id)
        # Claimed (PostgreSQL) but held back by a cap here: free for any node again at once.
        held_back = [due.id for due in rows if due.id not in launched and due.id not in self._in_flight]
        await outbox.release(self.store, held_back, self._claim)
        return len(rows) == limit and bool(launched)

    async def _idle_timeout(self) -> float:
        """Seconds until something could become due: a scheduled retry or a gate opening."""
        now = self._clock.now()
        timeout = self.options.poll_interval
        if self.store.dialect == "postgresql":
            timeout = min(timeout, self.options.cluster_poll_interval)
        upcoming = [when] if (when := await outbox.next_due(self.store, now)) else []
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
        await outbox.expire(self.store, now - timedelta(seconds=self._max_age + grace), list(self._in_flight))

    @property
    def _max_age(self) -> float:
        return self.options.max_age if self.options.max_age is not None else self.settings.webhook_max_age

    @property
    def _timeout(self) -> float:
        return self.options.timeout if self.options.timeout is not None else self.settings.webhook_timeout

    @property
    def _claim(self) -> outbox.Claim:
        """This node's claims on rows it sends (PostgreSQL): they outlast one request."""
        return outbox.Claim(self.claimant, lease=self._timeout + self.options.claim_margin)

    # ---------------------------------------------------------------- one attempt

    def _signer(self, due: Due) -> Webhook:
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

    def _client(self, due: Due, receiver: Receiver) -> httpx.AsyncClient:
        # The operator's own server-wide URL is trusted; every URL a caller chose is guarded.
        trusted = self.settings.webhook_url is not None and due.url == self.settings.webhook_url
        return receiver.http_client(cap=self.options.per_receiver, guard=None if trusted else self.guard,
                                    transport=self._transport)

    async def _attempt(self, due: Due, receiver: Receiver) -> None:
        sending = True
        try:
            outcome = await post(due, self._client(due, receiver), lambda: self._signer(due), self._timeout)
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

    def _release(self, due: Due, receiver: Receiver) -> None:
        self._sending -= 1
        receiver.in_flight -= 1
        for counter, key in ((self._per_session, due.session_id), (self._per_owner, due.owner)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        self._wake.set()

    def _record(self, due: Due, receiver: Receiver, outcome: Outcome) -> list[Statement]:
        """The outcome of one attempt as statements, and the receiver's gate updated."""
        now = self._clock.now()
        extra: list[Statement] = []
        next_at: datetime | None = None
        answered = outcome.status_code is not None and (outcome.ok or not outcome.retryable)
        if answered:
            if receiver.failures:
                extra.append(outbox.pull_forward(self.store, due.url, now))
            receiver.failures, receiver.closed_until = 0, None
            # Its server is back, so other URLs on it may be too: probe them now rather than
            # when their own gates open (up to probe_max_delay later).
            for other in self._receivers.values():
                if other.failures and other.origin == receiver.origin:
                    other.closed_until = None
        if outcome.ok:
            status = DeliveryStatus.DELIVERED
        elif outcome.undeliverable:
            status = DeliveryStatus.DEAD
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
                delay = self.options.backoff(due.attempts + 1, self._rng)
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, self.options.max_delay))
                next_at = min(now + timedelta(seconds=delay), deadline)
        self.outcomes["retry" if status is DeliveryStatus.PENDING else status.value] += 1
        return outbox.record(self.store, due, now, status=status, next_at=next_at,
                             status_code=outcome.status_code, error=outcome.error,
                             duration_ms=outcome.duration_ms, claim=self._claim) + extra
