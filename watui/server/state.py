"""What the routes share at run time: the manager, the frame cache, the open streams, the
webhook guard, the metrics, and the background tasks that watch over them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from watui.errors import ValidationFailed
from watui.machine import EventType
from watui.models import Caller
from watui.server.limits import StreamLease, StreamRegistry, revoked_keys_query
from watui.server.metrics import ServerMetrics
from watui.server.streams import EventStream, FrameCache, parse_last_event_id, pump
from watui.service import Subscription
from watui.webhooks.guard import WebhookGuard

if TYPE_CHECKING:
    from watui.cluster.types import Locator
    from watui.config import Settings
    from watui.manager import SessionManager

log = logging.getLogger("watui.server")


class ServerState:
    def __init__(
        self, manager: SessionManager, settings: Settings, send_timeout: float, locator: Locator | None = None
    ) -> None:
        self.manager = manager
        self.locator = locator
        """Cluster mode: which node runs which session, and the nodes; None on a single node."""
        self.settings = settings
        self.send_timeout = send_timeout
        self.frames = FrameCache(clock=manager.clock)
        self.stopping = asyncio.Event()
        self.subscriptions: set[Subscription] = set()
        self.simulated = manager.service(Caller.local_admin()).simulated
        self.streams = StreamRegistry(per_key=settings.max_streams_per_key, total=settings.max_streams)
        self.guard = WebhookGuard.from_settings(settings)
        self.metrics = ServerMetrics(self)
        self.abort_client: Callable[[Any], None] = lambda client: None
        """Set by the server that runs the app: abort the connection of a client address now
        (a stalled SSE client, whose socket a graceful close would keep open)."""
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Background watchers, for as long as the app runs."""
        loop = asyncio.get_running_loop()
        revoked = revoked_keys_query(self.manager.store)
        self._tasks = [
            loop.create_task(self.streams.watch_revocations(revoked), name="watui-revocations"),
            loop.create_task(self.metrics.watch_loop_lag(), name="watui-loop-lag"),
        ]

    async def stop_streams(self) -> None:
        """End every open SSE stream (the server is shutting down)."""
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for subscription in list(self.subscriptions):
            await subscription.aclose()

    async def resume_point(self, header: str | None, query: str | None) -> int | None:
        """The validated ``Last-Event-ID``. One past the end of the log cannot have come from
        this server (every id sent is committed first): resuming there would wait for events
        that may never match, so it is refused instead. In a cluster the id may come from
        another node, ahead of what this one has fanned out so far: the shared log decides."""
        resume = parse_last_event_id(header, query)
        store = self.manager.store
        head = store.last_committed_id
        if resume is not None and resume > head and self.manager.cluster is not None:
            head = await store.max_event_id()
        if resume is not None and resume > head:
            raise ValidationFailed(
                f"Last-Event-ID {resume} is ahead of the event log (last id {head})",
                details={"last_event_id": resume, "last_id": head},
            )
        return resume

    def lease(self, key_id: str | None, caller: Caller) -> StreamLease:
        """A place for one more stream, or ``429 TOO_MANY_STREAMS``."""
        return self.streams.acquire(key_id, admin=caller.admin)

    def pump(
        self,
        subscription: Subscription,
        lease: StreamLease,
        first: list[bytes] | None = None,
        close_on: frozenset[EventType] = frozenset(),
    ) -> EventStream:
        """An SSE response streaming ``first`` then ``subscription``'s events."""
        lease.closers.append(subscription.aclose)
        content = pump(subscription, self.frames, first=first or (), close_on=close_on,
                       registry=self.subscriptions)
        return self.stream(content, lease)

    def stream(self, content: AsyncIterator[bytes], lease: StreamLease | None = None) -> EventStream:
        return EventStream(
            content,
            stopping=self.stopping,
            ping=self.settings.sse_ping_interval,
            send_timeout=self.send_timeout,
            lease=lease,
            on_stall=lambda scope: self.abort_client(scope.get("client")),
        )
