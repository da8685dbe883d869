"""A :class:`watui.service.Subscription` over the server's ``/v1/events`` SSE stream.

It connects as soon as it is made (so a listing made right after ``subscribe()`` is no older
than the stream, as in-process), hands out events in id order, and when the stream breaks
(server restarted, network gone) reconnects with back-off and ``Last-Event-ID``: the server
replays what came after it, so nothing is missed and nothing is repeated. When the server
cannot resume there (``410 EVENTS_EXPIRED``, or an id past its log: another server, a new
data dir), it follows the live stream again and reports a resync on the link, and the console
re-reads every session.

The stream is read in raw chunks by a bounded decoder (:class:`watui.remote.bounded.SSEDecoder`):
a line or an event past the client's caps ends the connection with a clear reason on the link,
which then reconnects like after any break.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import ServerSentEvent

from watui.errors import WatuiError
from watui.machine import EventType
from watui.models import Event
from watui.remote.bounded import SSEDecoder, check_encoding, read_body
from watui.remote.errors import BadResponse, error_from_response, unreachable

if TYPE_CHECKING:
    from watui.remote.service import RemoteService

log = logging.getLogger(__name__)

HEAD_HEADER = "X-Last-Event-Id"
"""Response header of ``/v1/events``: the last id in the log when the stream began."""

CANNOT_RESUME = frozenset({"EVENTS_EXPIRED", "VALIDATION_ERROR"})
"""Refusals of a resume point: the events are gone, or the id is past this server's log."""

_CLOSED: Any = object()


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``first``, doubling up to ``cap``, each with ±``jitter``."""

    first: float = 0.25
    cap: float = 5.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.first * 2 ** max(0, attempt - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    async def wait(self, attempt: int) -> None:
        """Wait before reconnect attempt ``attempt`` (1, 2, …)."""
        await asyncio.sleep(self.delay(attempt))


def parse_event(sse: ServerSentEvent, owners: dict[str, str]) -> Event | None:
    """The :class:`Event` an SSE frame carries; ``None`` for a ping or a type this client
    does not know (a newer server). ``owner`` is not in the frame: it comes from the
    sessions this client has read."""
    if not sse.id or not sse.event or not sse.data:
        return None
    try:
        event_type = EventType(sse.event)
    except ValueError:
        return None
    data: dict[str, Any] = json.loads(sse.data)
    session_id = str(data.pop("session_id"))
    timestamp = datetime.fromisoformat(str(data.pop("timestamp")).replace("Z", "+00:00"))
    if event_type is EventType.QR:
        data.pop("qr_data", None)  # drawn by the server from qr_text; the log keeps the text
    return Event(id=int(sse.id), type=event_type, session_id=session_id,
                 owner=owners.get(session_id, ""), timestamp=timestamp, payload=data)


class RemoteSubscription:
    """Events of ``/v1/events``, filtered here by session and type, reconnecting forever."""

    def __init__(
        self,
        service: RemoteService,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        types: frozenset[EventType] | None = None,
        queue_size: int = 4096,
    ) -> None:
        self._service = service
        self._session_id = session_id
        self._types = types
        self._resume = after_id
        """Where the next connection resumes: the last id received (``None``: live)."""
        self.last_id = after_id or 0
        self.closed = False
        self.connects = 0
        self.first_attempt = asyncio.Event()
        """Set once the first connection is up or has failed: calls made after ``subscribe()``
        wait for it, so what they read is no older than the stream."""
        self._queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self.decoder: SSEDecoder | None = None
        """The current connection's decoder (``buffered`` says what it holds)."""
        self._task: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # no loop yet: started on first iteration
            self._start()

    def _start(self) -> None:
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watui-remote-events")

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        self._start()
        if self.closed:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is _CLOSED:
            raise StopAsyncIteration
        self.last_id = event.id
        return event

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.first_attempt.set()
        self._service._forget(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    # ------------------------------------------------------------------ the reader

    def _matches(self, event: Event) -> bool:
        return (self._session_id is None or event.session_id == self._session_id) and (
            self._types is None or event.type in self._types
        )

    async def _run(self) -> None:
        link = self._service.link
        attempt = 0
        resync = False
        while not self.closed:
            connects = self.connects
            try:
                resync = await self._follow(resync)
                reason = "the server ended the stream"
            except asyncio.CancelledError:
                raise
            except WatuiError as exc:
                if exc.code in CANNOT_RESUME and self._resume is not None:
                    log.warning("cannot resume after event %s (%s): following live, resyncing",
                                self._resume, exc.message)
                    self._resume, resync = None, True
                    continue
                reason = exc.message
            except httpx.HTTPError as exc:
                reason = unreachable(self._service.url, exc).message
            except Exception as exc:  # a bad frame must not end the console's only stream
                log.exception("the event stream failed")
                reason = f"{type(exc).__name__}: {exc}"
            self.first_attempt.set()
            if self.closed:
                break
            attempt = 1 if self.connects > connects else attempt + 1
            link.reconnecting(reason)
            await self._service.backoff.wait(attempt)
            if self._resume is None and self.connects:
                resync = True  # the server sent no head id: what happened meanwhile is unknown
        self.first_attempt.set()

    async def _follow(self, resync: bool) -> bool:
        """One connection: read until it ends. Returns whether a resync is still owed."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self._resume is not None:
            headers["Last-Event-ID"] = str(self._resume)
        service = self._service
        limits = service.limits
        async with service.client.stream("GET", "/events", headers=headers,
                                         timeout=service.stream_timeout) as response:
            check_encoding(response, service.url)
            if response.status_code != 200:
                raise error_from_response(response, await read_body(response, limits.body_bytes, service.url))
            if response.headers.get("content-type", "").partition(";")[0].strip() != "text/event-stream":
                raise BadResponse(f"The server at {service.url} did not answer /v1/events with an event stream",
                                  details={"url": service.url})
            head = response.headers.get(HEAD_HEADER)
            if self._resume is None and head is not None and head.isdigit():
                self._resume = int(head)
                if self._queue.empty() and self.last_id < self._resume:
                    self.last_id = self._resume
            self.connects += 1
            self.first_attempt.set()
            service.link.connected()
            if resync:
                service.link.resynced()
                resync = False
            decoder = SSEDecoder(service.url, limits.line_bytes, limits.event_bytes)
            self.decoder = decoder
            async for chunk in response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    await self._take(sse)
        return resync

    async def _take(self, sse: ServerSentEvent) -> None:
        event = parse_event(sse, self._service.owners)
        if sse.id and sse.id.isdigit():
            self._resume = int(sse.id)
        if event is not None and self._matches(event):
            await self._queue.put(event)
