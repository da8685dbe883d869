"""``RemoteService``: the :class:`watui.service.SessionService` of a running ``watui serve``.

Each call is one request to the HTTP API (``/v1``) with the caller's key; a refusal raises the
same :class:`watui.errors.WatuiError` subclass as in-process, carrying the server's own message
(see :mod:`watui.remote.errors`); a server that cannot be reached raises
:class:`~watui.remote.errors.ServerUnreachable`. ``subscribe()`` follows ``/v1/events``
(:mod:`watui.remote.subscription`). So the console's screens run unchanged on either.

The API's page sizes are shared with the server (:data:`watui.service.MAX_PAGE`, …): a call
for more than one page is answered by paging through. Every answer is read against
:class:`~watui.remote.bounded.Limits`, so a broken or hostile server cannot grow the console
without bound; a request that fails that way, or finds no server, marks the link down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import ValidationError

from watui.clock import Clock
from watui.errors import EngineFailure, SessionNotFound
from watui.machine import EventType, Status
from watui.models import (
    EngineHost,
    Event,
    MediaContent,
    Message,
    MessagePage,
    MessageStats,
    PairCode,
    QrCode,
    RestoreProgress,
    SendMessage,
    Session,
    SessionCreate,
    SessionPage,
    SessionSettings,
    SessionUpdate,
    SimulateRequest,
)
from watui.remote.bounded import Limits, check_encoding, read_body, read_lines
from watui.remote.errors import BadResponse, ResponseTooLarge, error_from_response, unreachable
from watui.remote.link import LinkMonitor, LinkState, LinkStatus
from watui.remote.subscription import Backoff, RemoteSubscription
from watui.service import MAX_BULK_IDS, MAX_EVENT_PAGE, MAX_PAGE, SortKey
from watui.webhooks import WebhookDelivery, WebhookDeliveryPage

STREAM_WAIT = 5.0
"""Seconds a call waits for a new subscription's first connection (see ``first_attempt``)."""

RESTORE_POLL = 2.0
"""Seconds between two reads of the server's restore progress while a restore runs."""

PAIR_CODE_POLL = 0.5
"""Seconds between two reads of a session whose pairing code the server answered ``202``
for (the code is on its way); ``PAIR_CODE_WAIT`` seconds at most."""
PAIR_CODE_WAIT = 60.0

HEALTH_EVERY = 30.0
"""Seconds between two reads of ``/v1/health`` otherwise (it is read again at every
reconnection too: a restarted server restores its sessions)."""


def _session_line(line: bytes) -> Session:
    try:
        return Session.model_validate_json(line)
    except ValidationError:  # a masked webhook secret: the slow way
        return _session(json.loads(line))


def _session(data: dict[str, Any]) -> Session:
    """A session from its JSON. The server masks a webhook secret (``whsec_…``), which the
    settings' own check would refuse: the mask is put back after validation."""
    settings = data.get("settings") or {}
    secret = settings.get("webhook_secret")
    if secret is None:
        return Session.model_validate(data)
    session = Session.model_validate({**data, "settings": {**settings, "webhook_secret": None}})
    masked: SessionSettings = session.settings.model_copy(update={"webhook_secret": secret})
    return session.model_copy(update={"settings": masked})


class RemoteService:
    """A running server's API, spoken as a :class:`~watui.service.SessionService`.

    Make one with :meth:`open` (checks the URL and the key first), close it with
    :meth:`aclose`. ``link`` tells how the event stream is doing.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        engine: str = "",
        timeout: float = 15.0,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
        health_every: float = HEALTH_EVERY,
    ) -> None:
        self.url = url.rstrip("/")
        self.engine = engine
        self.client = httpx.AsyncClient(
            base_url=self.url + "/v1",
            # Uncompressed: an answer is measured as it arrives (watui.remote.bounded).
            headers={"Authorization": f"Bearer {key}", "User-Agent": "watui-attach",
                     "Accept-Encoding": "identity"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
        )
        self.stream_timeout = httpx.Timeout(timeout, read=None)
        """Streams wait for events as long as the server keeps them open (it pings)."""
        self.backoff = backoff or Backoff()
        self.limits = limits or Limits()
        self.link = LinkMonitor(self.url, now=clock.now if clock is not None else None)
        self.owners: dict[str, str] = {}
        """Session id → owner, from every session read: SSE frames do not carry the owner."""
        self.in_flight = 0
        """Requests under way (event streams not counted)."""
        self.health_every = health_every
        self._subscriptions: set[RemoteSubscription] = set()
        self._restore: RestoreProgress | None = None
        self._wanted: dict[str, list[asyncio.Future[Session]]] = {}
        self._read_scheduled = False
        self._reads: set[asyncio.Task[None]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._health_read_at = -math.inf
        self._was_connected = False
        self._link_ups = 0
        self.link.listen(self._link_changed)

    @classmethod
    async def open(cls, url: str, key: str, **kwargs: Any) -> RemoteService:
        """Connect: the server must answer ``/v1/health`` and accept the key (else the
        ``WatuiError`` that says why, e.g. ``Unauthorized`` or ``ServerUnreachable``)."""
        service = cls(url, key, **kwargs)
        try:
            health = await service._health()
            service.engine = str(health.get("engine", ""))
            await service._request("GET", "/sessions", params={"limit": 1})
        except BaseException:
            await service.aclose()
            raise
        return service

    async def aclose(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        if self._health_task is not None:
            self._health_task.cancel()
        await self.client.aclose()

    @property
    def subscriptions(self) -> tuple[RemoteSubscription, ...]:
        """The event streams open now."""
        return tuple(self._subscriptions)

    @property
    def busy(self) -> bool:
        """A request is under way, or a read is waiting to go out."""
        return self.in_flight > 0 or bool(self._wanted) or bool(self._reads)

    # ------------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _exchange(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """One request whose answer the caller reads (with a cap) inside the block. A refusal
        raises its ``WatuiError``; no server, or an answer past a cap or not usable, raises
        and marks the link down; an answer that gets through marks it up."""
        self.in_flight += 1
        try:
            await self._after_new_streams()
            async with self.client.stream(method, path, **kwargs) as response:
                check_encoding(response, self.url)
                if response.status_code >= 400:
                    body = await read_body(response, self.limits.body_bytes, self.url)
                    self.link.reachable()
                    raise error_from_response(response, body)
                yield response
            self.link.reachable()
        except httpx.HTTPError as exc:
            error = unreachable(self.url, exc)
            self.link.unreachable(error.message)
            raise error from None
        except BadResponse as exc:
            self.link.unreachable(exc.message)
            raise
        finally:
            self.in_flight -= 1

    async def _request(self, method: str, path: str, **kwargs: Any) -> bytes:
        async with self._exchange(method, path, **kwargs) as response:
            return await read_body(response, self.limits.body_bytes, self.url)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self._request(method, path, **kwargs)
        try:
            return json.loads(body)
        except ValueError:
            error = BadResponse(f"The server at {self.url} answered {method} {path} with something "
                                "that is not JSON", details={"url": self.url})
            self.link.unreachable(error.message)
            raise error from None

    async def _after_new_streams(self) -> None:
        """In-process, ``subscribe()`` is live at once; here its connection takes a round
        trip. A call made after it waits for that first connection (at most
        ``STREAM_WAIT``), so what the call reads is no older than the stream."""
        waiting = [s.first_attempt.wait() for s in self._subscriptions if not s.first_attempt.is_set()]
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting), STREAM_WAIT)

    def _forget(self, subscription: RemoteSubscription) -> None:
        self._subscriptions.discard(subscription)

    def _keep(self, session: Session) -> Session:
        self.owners[session.id] = session.owner
        return session

    async def _session_call(self, method: str, path: str, **kwargs: Any) -> Session:
        return self._keep(_session(await self._json(method, path, **kwargs)))

    async def _health(self) -> dict[str, Any]:
        with contextlib.suppress(RuntimeError):  # outside a loop: nothing polls
            self._health_read_at = asyncio.get_running_loop().time()
        health: dict[str, Any] = await self._json("GET", "/health")
        progress = health.get("restoring") if isinstance(health, dict) else None
        self._restore = RestoreProgress.model_validate(progress) if progress else None
        return health

    # ------------------------------------------------------------------ SessionService

    @property
    def simulated(self) -> bool:
        return self.engine == "simulated"

    async def list_sessions(
        self,
        *,
        status: Status | None = None,
        query: str | None = None,
        limit: int | None = 20,
        offset: int = 0,
        sort: SortKey = "created_at",
        descending: bool = False,
    ) -> SessionPage:
        params: dict[str, Any] = {"sort": sort, "descending": str(descending).lower()}
        if status is not None:
            params["status"] = status.value
        if query:
            params["q"] = query
        if limit is not None and limit <= MAX_PAGE:
            return await self._page(params, offset, limit)
        body = {key: value for key, value in params.items() if key != "descending"}
        everything = await self._bulk({**body, "descending": descending})
        return SessionPage(sessions=everything[offset : None if limit is None else offset + limit],
                           total=len(everything))

    async def _page(self, params: dict[str, Any], offset: int, limit: int) -> SessionPage:
        body = await self._request("GET", "/sessions", params={**params, "offset": offset, "limit": limit})
        try:
            page = SessionPage.model_validate_json(body)
        except ValidationError:  # a masked webhook secret: the slow way
            data = json.loads(body)
            page = SessionPage(sessions=[_session(s) for s in data["sessions"]], total=data["total"])
        for session in page.sessions:
            self._keep(session)
        return page

    async def _bulk(self, body: dict[str, Any]) -> list[Session]:
        """``POST /v1/bulk/sessions``: many sessions in one streamed answer (NDJSON), each
        line and the whole answer within the client's limits, and no more sessions than the
        server announced (``X-Total-Count``), or than ids asked for."""
        ids = body.get("ids")
        most = len(ids) if isinstance(ids, list) else self.limits.bulk_sessions
        sessions: list[Session] = []
        async with self._exchange("POST", "/bulk/sessions", json=body) as response:
            announced = response.headers.get("x-total-count", "")
            if announced.isdigit() and int(announced) < most:
                most = int(announced)
            async for line in read_lines(response, self.limits, self.url):
                if not line.strip():
                    continue
                if len(sessions) >= most:
                    raise ResponseTooLarge(
                        f"The server at {self.url} sent more than {most:,} sessions in one bulk answer, "
                        "the most this console reads (or more than it announced): dropped",
                        details={"url": self.url, "limit": most})
                sessions.append(self._keep(_session_line(line)))
        return sessions

    async def get_session(self, session_id: str) -> Session:
        """Reads made in the same turn of the loop (the console re-reading the sessions a
        burst of events changed) go out together, as one bulk read."""
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(session_id, []).append(future)
        if not self._read_scheduled:
            self._read_scheduled = True
            asyncio.get_running_loop().call_soon(self._read_wanted)
        return await future

    def _read_wanted(self) -> None:
        self._read_scheduled = False
        wanted, self._wanted = self._wanted, {}
        task = asyncio.get_running_loop().create_task(self._read_sessions(wanted))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read_sessions(self, wanted: dict[str, list[asyncio.Future[Session]]]) -> None:
        ids = list(wanted)
        found: dict[str, Session] = {}
        try:
            if len(ids) == 1:  # one read: the plain route, with its own refusals
                try:
                    found[ids[0]] = await self._session_call("GET", f"/sessions/{ids[0]}")
                except SessionNotFound:
                    pass
            else:
                for start in range(0, len(ids), MAX_BULK_IDS):
                    for session in await self._bulk({"ids": ids[start : start + MAX_BULK_IDS]}):
                        found[session.id] = session
        except Exception as exc:
            for futures in wanted.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for session_id, futures in wanted.items():
            for future in futures:
                if future.done():
                    continue
                if session_id in found:
                    future.set_result(found[session_id])
                else:
                    future.set_exception(SessionNotFound(session_id))

    async def create_session(self, spec: SessionCreate) -> Session:
        data = await self._json("POST", "/sessions", json=spec.model_dump(mode="json"))
        return self._keep(_session(data["session"]))

    async def update_session(self, session_id: str, patch: SessionUpdate) -> Session:
        return await self._session_call("PATCH", f"/sessions/{session_id}",
                                        json=patch.model_dump(mode="json", exclude_unset=True))

    async def start(self, session_id: str) -> Session:
        return await self._session_call("POST", f"/sessions/{session_id}/start")

    async def stop(self, session_id: str) -> Session:
        return await self._session_call("POST", f"/sessions/{session_id}/stop")

    async def restart(self, session_id: str) -> Session:
        return await self._session_call("POST", f"/sessions/{session_id}/restart")

    async def logout(self, session_id: str) -> Session:
        return await self._session_call("POST", f"/sessions/{session_id}/logout")

    async def delete(self, session_id: str) -> None:
        await self._request("DELETE", f"/sessions/{session_id}")

    async def request_pair_code(self, session_id: str, phone_number: str) -> PairCode:
        data = await self._json("POST", f"/sessions/{session_id}/pair-code", json={"phone_number": phone_number})
        if isinstance(data, dict) and data.get("status") == "pending":
            return await self._pair_code_later(session_id)
        return PairCode.model_validate(data)

    async def _pair_code_later(self, session_id: str) -> PairCode:
        """The server answered ``202``: the code comes to the session; read it until it shows
        one, or it stops linking (it failed, or was stopped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PAIR_CODE_WAIT
        while True:
            session = await self.get_session(session_id)
            if session.pair_code and session.pair_code_expires_at is not None:
                return PairCode(session_id=session_id, code=session.pair_code,
                                expires_at=session.pair_code_expires_at)
            if session.status not in (Status.INITIALIZING, Status.QR_READY):
                raise EngineFailure(session.reason or f"no pairing code: the session is {session.status.value}")
            if loop.time() > deadline:
                raise EngineFailure("the engine issued no pairing code in time")
            await asyncio.sleep(PAIR_CODE_POLL)

    async def get_qr(self, session_id: str) -> QrCode:
        return QrCode.model_validate(await self._json("GET", f"/sessions/{session_id}/qr"))

    async def send_message(self, session_id: str, to: str, text: str) -> Message:
        data = await self._json("POST", f"/sessions/{session_id}/messages", json={"to": to, "text": text})
        return Message.model_validate(data)

    async def send(
        self, session_id: str, request: SendMessage, *, upload: Path | None = None,
        upload_type: str | None = None,
    ) -> Message:
        """JSON, or ``multipart/form-data`` when the file is a local ``upload`` (sent from
        the file, then deleted: the service takes it over, as the local one does)."""
        path = f"/sessions/{session_id}/messages"
        if upload is None:
            return Message.model_validate(await self._json(
                "POST", path, json=request.model_dump(mode="json", exclude_none=True)))
        media = request.media
        fields = {"to": request.to, "type": request.type.value}
        for name, value in (("caption", request.caption), ("mimetype", media.mimetype if media else None),
                            ("filename", media.filename if media else None)):
            if value:
                fields[name] = value
        try:
            with upload.open("rb") as f:
                name = (media.filename if media else None) or upload.name
                data = await self._json("POST", path, data=fields,
                                        files={"file": (name, f, upload_type or "application/octet-stream")})
        finally:
            await asyncio.to_thread(upload.unlink, True)
        return Message.model_validate(data)

    async def message_media(self, session_id: str, message_id: str) -> MediaContent:
        """The file's type and size from a one-byte ranged read; ``read`` then asks for the
        bytes it wants (``Range``), so a large file is never held whole."""
        path = f"/sessions/{session_id}/messages/{message_id}/media"
        async with self._exchange("GET", path, headers={"Range": "bytes=0-0"}) as response:
            await response.aread()
            total = response.headers.get("content-range", "").rpartition("/")[2]
            size = int(total) if total.isdigit() else int(response.headers.get("content-length", "0"))
            mimetype = response.headers.get("content-type", "application/octet-stream")
            disposition = response.headers.get("content-disposition", "")
        filename = unquote(disposition.partition("filename*=UTF-8''")[2]) or None

        async def read(start: int, end: int) -> AsyncIterator[bytes]:
            async with self._exchange("GET", path, headers={"Range": f"bytes={start}-{end}"}) as answer:
                async for piece in answer.aiter_bytes():
                    yield piece

        return MediaContent(mimetype, size, filename, read)

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> MessagePage:
        messages: list[Message] = []
        total = 0
        async for data in self._pages(f"/sessions/{session_id}/messages", limit, offset):
            page = MessagePage.model_validate(data)
            messages.extend(page.messages)
            total = page.total
            if len(page.messages) < MAX_PAGE:
                break
        return MessagePage(messages=messages[: max(0, limit)], total=total)

    async def message_stats(self, session_id: str, *, days: int = 30) -> MessageStats:
        data = await self._json("GET", f"/sessions/{session_id}/stats", params={"days": days})
        return MessageStats.model_validate(data)

    async def all_message_stats(self, *, days: int = 30) -> MessageStats:
        return MessageStats.model_validate(await self._json("GET", "/stats", params={"days": days}))

    async def list_events(
        self, *, session_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        """The log from ``after_id``, as many events as asked: in pages of the server's
        ``MAX_EVENT_PAGE``, each after the last one read."""
        events: list[Event] = []
        while len(events) < limit:
            want = min(MAX_EVENT_PAGE, limit - len(events))
            params: dict[str, Any] = {"after_id": after_id, "limit": want}
            if session_id is not None:
                params["session_id"] = session_id
            data = await self._json("GET", "/events/log", params=params)
            page = [Event.model_validate(e) for e in data["events"]]
            events.extend(page)
            if len(page) < want:
                break
            after_id = page[-1].id
        return events

    async def list_webhook_deliveries(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> WebhookDeliveryPage:
        deliveries: list[WebhookDelivery] = []
        total = 0
        async for data in self._pages(f"/sessions/{session_id}/webhooks/deliveries", limit, offset):
            page = WebhookDeliveryPage.model_validate(data)
            deliveries.extend(page.deliveries)
            total = page.total
            if len(page.deliveries) < MAX_PAGE:
                break
        return WebhookDeliveryPage(deliveries=deliveries[: max(0, limit)], total=total)

    async def _pages(self, path: str, limit: int, offset: int) -> AsyncIterator[dict[str, Any]]:
        """``limit`` items from ``offset`` of an offset-paged route, ``MAX_PAGE`` at a time
        (the caller stops early on a short page). At least one page is read: its ``total``
        answers a call for none."""
        read = 0
        while True:
            want = max(1, min(MAX_PAGE, limit - read))
            data = await self._json("GET", path, params={"limit": want, "offset": offset + read})
            yield data
            read += want
            if read >= limit or offset + read >= int(data.get("total", 0)):
                return

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        """The latest ``limit`` events, at most ``MAX_EVENT_PAGE`` (the route gives the newest
        ones, and there is no page before them to ask for)."""
        data = await self._json("GET", f"/sessions/{session_id}/events",
                                params={"limit": max(1, min(limit, MAX_EVENT_PAGE))})
        return [Event.model_validate(e) for e in data["events"]]

    def subscribe(
        self,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        types: frozenset[EventType] | None = None,
    ) -> RemoteSubscription:
        subscription = RemoteSubscription(self, session_id=session_id, after_id=after_id, types=types)
        self._subscriptions.add(subscription)
        return subscription

    async def simulate(self, session_id: str, request: SimulateRequest) -> Session:
        return await self._session_call("POST", f"/sessions/{session_id}/simulate",
                                        json=request.model_dump(mode="json", exclude_none=True))

    async def engine_hosts(self) -> list[EngineHost]:
        data = await self._json("GET", "/engine/hosts")
        rows = data.get("hosts", []) if isinstance(data, dict) else data
        return [EngineHost.model_validate(h) for h in rows]

    @property
    def restore_progress(self) -> RestoreProgress | None:
        """The server's restore, as of its last ``/v1/health``. Reading it keeps it fresh:
        ``/v1/health`` is read again every ``RESTORE_POLL`` seconds while a restore runs,
        every ``health_every`` otherwise, and at once after each reconnection."""
        self._poll_health()
        return self._restore

    def _poll_health(self, *, now: bool = False) -> None:
        if self._health_task is not None and not self._health_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # read outside a loop: the value stands
            return
        restoring = self._restore is not None and not self._restore.finished
        every = RESTORE_POLL if restoring else self.health_every
        if now or loop.time() >= self._health_read_at + every:
            self._health_task = loop.create_task(self._read_health())

    async def _read_health(self) -> None:
        with contextlib.suppress(Exception):  # the link says what went wrong
            await self._health()

    def _link_changed(self, status: LinkStatus) -> None:
        """Back after a break: the server may have restarted, and be restoring its sessions."""
        connected = status.state is LinkState.CONNECTED
        if connected and not self._was_connected:
            self._link_ups += 1
            if self._link_ups > 1:
                self._poll_health(now=True)
        self._was_connected = connected
