"""Server-Sent Events: the per-session stream and the all-sessions ``/v1/events`` stream.

The bus does the hard part (replay from the log, then live, with no gap and no duplicate;
a bounded queue per subscriber). Here each event becomes one frame, encoded once however
many clients receive it, and each stream ends cleanly: after its closing event, when the
client goes away, when a send stalls for longer than ``send_timeout``, or when the server
shuts down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from sse_starlette.sse import EventSourceResponse, SendTimeoutError, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from watui import qr, qr_drawings
from watui.clock import Clock
from watui.errors import ValidationFailed
from watui.machine import EventType, Status
from watui.models import Event, Session, isoformat
from watui.qr_drawings import Drawings
from watui.server.limits import StreamLease
from watui.service import Subscription
from watui.stores.base import StoreProtocol
from watui.stores.dialects import sql_for

log = logging.getLogger(__name__)

CLOSING_EVENTS: frozenset[EventType] = frozenset({EventType.CONNECTED, EventType.ERROR, EventType.DELETED})
"""A session stream ends right after one of these: linking is over, one way or the other."""

_NEUTRAL_TARGETS = frozenset({Status.CONNECTED.value, Status.FAILED.value})
"""Status changes that come just before a closing event and so do not reopen a stream."""

MAX_LAST_EVENT_ID = 2**63 - 1


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The resume point from ``Last-Event-ID`` (or ``?last_event_id=``); 422 if not a number."""
    raw = header if header not in (None, "") else query
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 19 or int(text) > MAX_LAST_EVENT_ID:
        raise ValidationFailed(
            "Last-Event-ID must be a non-negative integer (the id: of an event)",
            details={"last_event_id": raw[:40]},
        )
    return int(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    return str(value)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def frame(event_id: int, event_type: str, data: dict[str, Any]) -> bytes:
    """One SSE frame. ``json.dumps`` escapes newlines, so ``data:`` is always one line."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {_dumps(data)}\n\n".encode()


def event_data(event: Event, qr_data: str | None = None) -> dict[str, Any]:
    """The ``data:`` object of an event; a ``qr`` event's PNG goes in as ``qr_data``."""
    data = event.data()
    if qr_data is not None:
        data["qr_data"] = qr_data
    return data


def encode(event: Event, qr_data: str | None = None) -> bytes:
    return frame(event.id, event.type.value, event_data(event, qr_data))


def qr_text_of(event: Event) -> str | None:
    """The code a ``qr`` event carries (``None`` for any other event)."""
    if event.type is not EventType.QR:
        return None
    text = event.payload.get("qr_text")
    return text if isinstance(text, str) else None


class FrameCache:
    """Encoded frames by event id, so a fan-out to N clients encodes each event once.

    A ``qr`` frame carries its code's PNG as ``qr_data``, drawn when the first stream that
    owes the frame asks for it (:data:`watui.qr_drawings.drawings`: off the event loop, once per code,
    shared by every stream and webhook asking). A stream waits for its own frames only; the
    others and the loop go on. A code that expired, or was superseded by a newer code of its
    session, before it was drawn is nobody's use: its frame goes out without ``qr_data``
    (``qr_text`` and the rest as always), so no event id is ever skipped.
    """

    def __init__(self, size: int = 4096, drawings: Drawings = qr_drawings.drawings, clock: Clock | None = None) -> None:
        self._size = size
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self.drawings = drawings
        self._clock = clock
        """The clock the events' ``expires_at`` was set by (the manager's), if not the wall clock."""

    def _expiry(self, value: object) -> datetime | None:
        """A code's ``expires_at`` on the wall clock, which the drawings go by."""
        if not isinstance(value, str):
            return None
        try:
            expires = datetime.fromisoformat(value)
        except ValueError:
            return None
        if self._clock is not None:
            expires += datetime.now(UTC) - self._clock.now()
        return expires

    def _keep(self, event_id: int, encoded: bytes) -> bytes:
        self._frames[event_id] = encoded
        if len(self._frames) > self._size:
            self._frames.popitem(last=False)
        return encoded

    async def frames(self, events: Sequence[Event]) -> list[bytes]:
        """The frames of ``events``, in order; a ``qr`` frame may wait for its PNG.

        Every code of the batch is noted first, so an earlier code of a session that a later
        one in the same batch supersedes is not drawn; the codes still owed are then drawn
        together (newest first), while this stream alone waits.
        """
        out: list[bytes | None] = []
        owed: list[tuple[int, Event, str]] = []
        for event in events:
            cached = self._frames.get(event.id)
            if cached is None:
                code = qr_text_of(event)
                if code is None:
                    cached = self._keep(event.id, encode(event))
                else:
                    owed.append((len(out), event, code))
            out.append(cached)
        if owed:
            for _, event, code in owed:
                self.drawings.note(event.session_id, event.id, code)
            needs = [self.drawings.need(code, session_id=event.session_id, order=event.id,
                                        expires_at=self._expiry(event.payload.get("expires_at")))
                     for _, event, code in owed]
            try:
                pngs = [need.result() if need.done() else await asyncio.wrap_future(need) for need in needs]
            finally:
                for need in needs:
                    need.cancel()  # the stream went away: nobody here needs the rest (no-op once done)
            for (index, event, _), png in zip(owed, pngs, strict=True):
                cached = self._frames.get(event.id)  # another stream encoded it meanwhile
                if cached is None:
                    cached = self._keep(event.id, encode(event, None if png is None else qr.data_url(png)))
                out[index] = cached
        return [each for each in out if each is not None]


PING = ServerSentEvent(comment="ping", sep="\n")
RETRY_MS = 3000
"""The ``retry:`` every stream starts with: reconnect after 3 s (browsers default to ~3 s too,
but say it rather than leave it to each client)."""
SHUTDOWN_GRACE = 3.0
"""Seconds a stream gets to end by itself once shutdown begins, before it is cancelled."""


class EventStream(EventSourceResponse):
    """sse-starlette's response, tuned for many long-lived clients.

    - Shutdown: sse-starlette watches a process-wide flag; several servers in one process (the
      tests) need their own, so the exit listener waits on the server's ``stopping`` event. On
      shutdown the server first closes every stream's subscription, so a stream ends with a
      proper last chunk; one still stuck after the grace period is cancelled.
    - Stalled clients: instead of a timeout scope around every send (a timer armed and
      cancelled per frame per client), one watchdog per stream checks now and then whether a
      send has been waiting longer than ``send_timeout``, and if so drops the client.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        stopping: asyncio.Event,
        ping: float,
        send_timeout: float,
        retry_ms: int = RETRY_MS,
        lease: StreamLease | None = None,
        on_stall: Callable[[Scope], None] | None = None,
    ) -> None:
        super().__init__(
            _with_retry(retry_ms, content),
            ping=ping,
            sep="\n",
            ping_message_factory=lambda: PING,
            headers={"Cache-Control": "no-store"},
            shutdown_grace_period=SHUTDOWN_GRACE,
            data_sender_callable=self._watchdog,
        )
        self._stopping = stopping
        self._stall_limit = send_timeout
        self._in_flight: dict[object, float] = {}
        self._lease = lease
        self._on_stall = on_stall

    async def _listen_for_exit_signal(self) -> None:  # type: ignore[override]
        await self._stopping.wait()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        token = object()
        self._in_flight[token] = time.monotonic()
        try:
            await send(message)
        finally:
            del self._in_flight[token]

    async def _watchdog(self) -> None:
        while True:
            await anyio.sleep(self._stall_limit / 4)
            if self._in_flight and time.monotonic() - min(self._in_flight.values()) > self._stall_limit:
                raise SendTimeoutError()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The client stopped reading. Returning mid-response alone would leave the socket
            # open (its unsent bytes keep a graceful close waiting for the client), so the
            # connection is aborted: the file descriptor is freed now.
            log.warning("dropped an SSE client that stopped reading")
            if self._on_stall is not None:
                self._on_stall(scope)
                await asyncio.sleep(0)  # let the server see the connection go
        finally:
            if self._lease is not None:
                self._lease.release()


async def _with_retry(retry_ms: int, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``retry:`` first (how long a browser waits before reconnecting), then the stream."""
    yield f"retry: {retry_ms}\n\n".encode()
    try:
        async for chunk in content:
            yield chunk
    finally:
        close = getattr(content, "aclose", None)
        if close is not None:
            await close()


async def _close_quietly(subscription: Subscription) -> None:
    # Shielded: the stream is usually being cancelled when this runs.
    with anyio.CancelScope(shield=True):
        try:
            await subscription.aclose()
        except Exception:  # pragma: no cover - cleanup must not mask the real outcome
            log.exception("closing a subscription failed")


MAX_BATCH_EVENTS = 256
"""Events already waiting for a client are taken together, up to this many, and go out in
writes of up to ``MAX_BATCH_BYTES``."""
MAX_BATCH_BYTES = 256 * 1024


def _writes(frames: list[bytes]) -> Iterator[bytes]:
    chunk: list[bytes] = []
    size = 0
    for each in frames:
        if chunk and size + len(each) > MAX_BATCH_BYTES:
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(each)
        size += len(each)
    if chunk:
        yield chunk[0] if len(chunk) == 1 else b"".join(chunk)


async def pump(
    subscription: Subscription,
    cache: FrameCache,
    *,
    first: Iterable[bytes] = (),
    close_on: frozenset[EventType] = frozenset(),
    registry: set[Subscription] | None = None,
) -> AsyncIterator[bytes]:
    """Frames for ``first`` then for every event of ``subscription``, ending after ``close_on``.

    Events that are already waiting when one is taken (a status change and its QR code,
    or a backlog after a busy moment) are sent together: under load that is what keeps
    a thousand clients from costing a thousand writes per event.

    The subscription sits in ``registry`` while the stream is open: closing it from outside
    ends the stream cleanly (that is how a shutdown ends every stream).
    """
    if registry is not None:
        registry.add(subscription)
    ready = getattr(subscription, "get_nowait", None)
    try:
        for chunk in first:
            yield chunk
        async for event in subscription:
            batch = [event]
            closing = event.type in close_on
            while ready is not None and not closing and len(batch) < MAX_BATCH_EVENTS:
                more: Event | None = ready()
                if more is None:
                    break
                batch.append(more)
                closing = more.type in close_on
            for chunk in _writes(await cache.frames(batch)):
                yield chunk
            if closing:
                return
    finally:
        if registry is not None:
            registry.discard(subscription)
        await _close_quietly(subscription)


SNAPSHOT_TYPES: frozenset[EventType] = frozenset(
    {EventType.STATUS, EventType.QR, EventType.PAIR_CODE, EventType.CONNECTED, EventType.ERROR}
)


async def latest_events(store: StoreProtocol, session_id: str, up_to: int) -> dict[EventType, Event]:
    """The session's latest event of each snapshot type with an id up to ``up_to``."""
    d = sql_for(store)
    rows = await store.fetchall(d.sql(
        "SELECT id, type, session_id, owner, ts, payload FROM events WHERE id IN ("
        " SELECT MAX(id) FROM events WHERE session_id = ? AND id <= ?"
        f" AND {d.member('type')} GROUP BY type)"
    ), (session_id, up_to, d.values(sorted(t.value for t in SNAPSHOT_TYPES))))
    out: dict[EventType, Event] = {}
    for r in rows:
        timestamp = d.read_ts(r[4])
        assert timestamp is not None
        event = Event(id=r[0], type=EventType(r[1]), session_id=r[2], owner=r[3],
                      timestamp=timestamp, payload=json.loads(r[5]))
        out[event.type] = event
    return out


async def snapshot_frames(
    session: Session, latest: dict[EventType, Event], cache: FrameCache, last_id: int
) -> tuple[list[bytes], bool]:
    """The current state of a session as frames, and whether the stream ends right after them
    (the session is already connected or failed).

    Each frame is the session's own latest event of its kind (as of ``last_id``, the point the
    live subscription starts after), with that event's id: the ``connected`` snapshot is the
    live event itself (with ``jid``), no two frames share an id, and a client that reconnects
    with any of them resumes exactly after what it has seen.
    """
    status = latest.get(EventType.STATUS)
    if status is None:  # never changed status: the one synthetic frame, at the resume point
        data = {"session_id": session.id, "from": None, "to": session.status.value,
                "reason": session.reason, "timestamp": isoformat(session.updated_at)}
        return [frame(last_id, EventType.STATUS.value, data)], False
    events = [status]
    to = status.payload.get("to")

    def after_status(kind: EventType) -> Event | None:
        event = latest.get(kind)
        return event if event is not None and event.id > status.id else None

    if to == Status.QR_READY.value:
        qr = after_status(EventType.QR)
        code = after_status(EventType.PAIR_CODE)
        if code is not None:
            expires = code.payload.get("expires_at")
            if expires and datetime.fromisoformat(str(expires).replace("Z", "+00:00")) <= datetime.now(UTC):
                code = None
        events.extend(sorted(filter(None, (qr, code)), key=lambda e: e.id))
    closing = {Status.CONNECTED.value: EventType.CONNECTED, Status.FAILED.value: EventType.ERROR}.get(str(to))
    last = after_status(closing) if closing is not None else None
    if last is not None:
        events.append(last)
    return await cache.frames(events), closing is not None


ReadEvents = Callable[[int, int], Awaitable[list[Event]]]
"""``(after_id, limit) -> events``: one session's status, connected, error and deleted events."""

STREAM_STATE_EVENTS: frozenset[EventType] = CLOSING_EVENTS | {EventType.STATUS}


async def closed_as_of(read_events: ReadEvents, last_id: int, page: int = 500) -> bool:
    """Whether a session stream resumed after ``last_id`` has already ended.

    It has if, among the session's events up to ``last_id``, the latest one that matters is a
    closing event (``connected``, ``error``) rather than a status change that starts a new
    round (back to stopped, initializing, …). Such a reconnect gets ``204 No Content``.
    """
    closed = False
    cursor = 0
    while cursor < last_id:
        events = await read_events(cursor, page)
        for event in events:
            if event.id > last_id:
                return closed
            if event.type in CLOSING_EVENTS:
                closed = True
            elif event.type is EventType.STATUS and event.payload.get("to") not in _NEUTRAL_TARGETS:
                closed = False
        if len(events) < page:
            break
        cursor = events[-1].id
    return closed
