"""``/v1/sessions``: create, list, read, change and delete sessions, their lifecycle verbs,
linking (QR, pairing code), messages, and the simulated phone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from watui.errors import EngineFailure, InvalidTransition
from watui.machine import Status, Trigger
from watui.manager.media import discard
from watui.manager.sent_keys import check_key
from watui.models import (
    Message,
    MessagePage,
    MessageStatus,
    PairCode,
    QrCode,
    Session,
    SessionCreate,
    SessionUpdate,
    SimulateRequest,
)
from watui.qr import png_of_data_url
from watui.server.deps import Service, SessionId, session_json, state_of, strict_json
from watui.server.media_http import SEND_BODY, media_response, send_body
from watui.server.schemas import (
    PairCodeRequest,
    SessionCreated,
    SessionList,
    SessionView,
    error_responses,
)
from watui.service import MAX_PAGE, SessionService, SortKey

IDEMPOTENCY_KEY = "Idempotency-Key"
"""Sends that carry it are made once (watui/manager/sent_keys.py)."""

log = logging.getLogger(__name__)

PAIR_CODE_ANSWER = 1.5
"""Seconds ``POST /pair-code`` waits for the code before it answers ``202`` (the code then
follows as a ``pair_code`` event on the session's stream, or the session fails with an
``error`` event): the engine needs WhatsApp's socket first, which may take long or never come."""


class PairCodePending(BaseModel):
    """``202``: the pairing code is on its way; it arrives as a ``pair_code`` event."""

    session_id: str
    status: Literal["pending"] = "pending"
    stream_url: str = Field(..., description="absolute URL of this session's SSE stream")


def sessions_router(*, simulated: bool) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post(
        "/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"],
        responses=error_responses(409), dependencies=[strict_json(SessionCreate)],
    )
    async def create_session(spec: SessionCreate, request: Request, service: Service) -> JSONResponse:
        """Create a session (and start it unless `start` is false). Open `stream_url` to follow
        it: the QR codes to scan arrive there. A `webhook_url` that points at a loopback,
        private or link-local address is refused (`422 WEBHOOK_URL_FORBIDDEN`)."""
        await state_of(request).guard.check_url(_url(spec.settings.webhook_url))
        session = await service.create_session(spec)
        stream_url = str(request.url_for("session_stream", session_id=session.id))
        generated = spec.settings.webhook_secret is None and session.settings.webhook_secret is not None
        return JSONResponse(
            {"session_id": session.id, "stream_url": stream_url,
             "session": session.public(reveal_secret=generated, reveal_url=True, reveal_proxy=True)},
            status_code=201,
            headers={"Location": str(request.url_for("get_session", session_id=session.id))},
        )

    @router.get("/sessions", response_model=SessionList, tags=["sessions"],
                responses=error_responses())
    async def list_sessions(
        service: Service,
        status: Annotated[Status | None, Query(description="only sessions in this status")] = None,
        q: Annotated[str | None, Query(max_length=100, description="matches name, phone, status")] = None,
        sort: Annotated[SortKey, Query()] = "created_at",
        descending: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> JSONResponse:
        """The caller's sessions (an admin key sees every owner's)."""
        page = await service.list_sessions(
            status=status, query=q or None, limit=limit, offset=offset, sort=sort, descending=descending
        )
        return JSONResponse({"sessions": [s.public() for s in page.sessions], "total": page.total})

    @router.get("/sessions/{session_id}", response_model=SessionView, tags=["sessions"],
                responses=error_responses(404))
    async def get_session(session_id: SessionId, service: Service) -> JSONResponse:
        return session_json(await service.get_session(session_id))

    @router.patch("/sessions/{session_id}", response_model=SessionView, tags=["sessions"],
                  responses=error_responses(404, 409), dependencies=[strict_json(SessionUpdate)])
    async def update_session(
        session_id: SessionId, patch: SessionUpdate, request: Request, service: Service
    ) -> JSONResponse:
        """Rename, describe, or change settings (only the fields given change; `null` for
        `auto_reconnect` or `max_reconnect_attempts` leaves them as they are). A session that
        runs (or waits to reconnect) when its proxy changes restarts at once, through the new
        proxy: the answer shows it starting again. The masked proxy sent back unchanged keeps
        the stored one."""
        before = await service.get_session(session_id)
        if patch.settings is not None:
            await state_of(request).guard.check_url(_url(patch.settings.webhook_url))
        after = await service.update_session(session_id, patch)
        # A secret the server generated just now (a webhook URL was set without one) is
        # shown in this response, once; so is a URL password set by this request.
        generated = after.settings.webhook_secret not in (None, before.settings.webhook_secret)
        url_set = patch.settings is not None and patch.settings.webhook_url is not None
        proxy_set = patch.settings is not None and patch.settings.proxy not in (None, after.public()["settings"]["proxy"])
        return JSONResponse(after.public(reveal_secret=generated, reveal_url=url_set, reveal_proxy=proxy_set))

    @router.delete("/sessions/{session_id}", status_code=204, response_class=Response,
                   tags=["sessions"], responses=error_responses(404, 409))
    async def delete_session(session_id: SessionId, service: Service) -> Response:
        """Delete a session: logs it out first if it is linked, and removes its auth data."""
        await service.delete(session_id)
        return Response(status_code=204)

    def action(name: str, call: Callable[[SessionService, str], Awaitable[Session]], doc: str) -> None:
        async def run(session_id: SessionId, service: Service) -> JSONResponse:
            return session_json(await call(service, session_id))

        run.__doc__ = doc
        router.add_api_route(
            f"/sessions/{{session_id}}/{name}", run, methods=["POST"], name=f"{name}_session",
            response_model=SessionView, tags=["lifecycle"], responses=error_responses(404, 409),
        )

    action("start", lambda s, i: s.start(i), "Start a stopped, disconnected or failed session.")
    action("stop", lambda s, i: s.stop(i), "Stop a session, keeping its link to the phone.")
    action("restart", lambda s, i: s.restart(i), "Stop (if running) and start again.")
    action("logout", lambda s, i: s.logout(i), "Unlink the phone; the session stays, disconnected.")

    @router.get(
        "/sessions/{session_id}/qr", response_model=QrCode, tags=["linking"],
        responses={
            **error_responses(404, 409),
            200: {"description": "JSON, or the PNG itself with `Accept: image/png`",
                  "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        },
    )
    async def get_qr(session_id: SessionId, service: Service, request: Request) -> Response:
        """The live QR code. `409 QR_NOT_AVAILABLE` when none is up (not started, linked, …)."""
        qr = await service.get_qr(session_id)  # drawn off the event loop, shared with streams
        if "image/png" in request.headers.get("accept", ""):
            return Response(
                png_of_data_url(qr.qr_data), media_type="image/png",
                headers={"Cache-Control": "no-store", "X-QR-Generation": str(qr.generation)},
            )
        return JSONResponse(qr.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    @router.post(
        "/sessions/{session_id}/pair-code", response_model=PairCode, tags=["linking"],
        responses={**error_responses(404, 409, 502),
                   202: {"model": PairCodePending,
                         "description": "the code follows as a `pair_code` event on `stream_url`"}},
        dependencies=[strict_json(PairCodeRequest)],
    )
    async def pair_code(
        session_id: SessionId, body: PairCodeRequest, service: Service, request: Request
    ) -> JSONResponse:
        """Link by phone number: the 8-character code to type on the phone, or `202` within
        2 s when it is not there yet (it then arrives as a `pair_code` event, or the session
        fails with an `error` event)."""
        # A task of its own: the request goes on when this answer (or the client) leaves.
        asked = asyncio.ensure_future(service.request_pair_code(session_id, body.phone_number))
        asked.add_done_callback(_late_pair_code)
        await asyncio.wait((asked,), timeout=PAIR_CODE_ANSWER)
        if not asked.done():
            stream_url = str(request.url_for("session_stream", session_id=session_id))
            pending = PairCodePending(session_id=session_id, stream_url=stream_url)
            return JSONResponse(pending.model_dump(mode="json"), status_code=202)
        try:
            code = asked.result()
        except EngineFailure:
            # Stopped (or logged out) while the code was on its way: the session's state
            # refused it, not the engine.
            status = (await service.get_session(session_id)).status
            if status in (Status.STOPPED, Status.DISCONNECTED):
                raise InvalidTransition(status.value, Trigger.PAIR_CODE.value) from None
            raise
        return JSONResponse(code.model_dump(mode="json"))

    @router.post("/sessions/{session_id}/messages", status_code=201, response_model=Message,
                 tags=["messages"], openapi_extra=SEND_BODY,
                 responses={202: {"model": Message, "description": "paced (`settings.send_rate`): queued, "
                                  "status `pending`; a `message_status` event with its `id` says when it went"},
                            **error_responses(404, 409, 413, 429, 502)})
    async def send_message(session_id: SessionId, request: Request, service: Service) -> JSONResponse:
        """Send a message of any type; the session must be connected. JSON (a file as base64
        ``media.data`` or a ``media.url`` to fetch), or ``multipart/form-data`` with the file
        in a part named ``file`` (large files). The file is checked against its type (size
        cap, sniffed content: ``422 MEDIA_TYPE_MISMATCH``) before it is sent.

        With an ``Idempotency-Key`` header (1 to 255 printable characters) a retry never sends
        twice, on any node: a key already used answers the message it sent (``201``,
        ``Idempotent-Replayed: true``), or ``409 CONFLICT`` while that send is under way or its
        outcome is unknown. Keys are kept 24 hours; a failed send gives its key back.

        A paced session (``settings.send_rate``) queues the message in order and answers
        ``202`` with status ``pending``; past the queue's cap it answers ``429 SEND_QUEUE_FULL``
        with ``Retry-After``."""
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key is not None:
            check_key(key)
        body, upload, upload_type = await send_body(request, state_of(request).settings)
        if key is None:
            message = await service.send(session_id, body, upload=upload, upload_type=upload_type)
            return JSONResponse(message.model_dump(mode="json"), status_code=sent_status(message))
        try:
            await service.get_session(session_id)  # 404 unless the caller sees it, replay or not
        except BaseException:
            await discard(upload)
            raise
        message, replayed = await state_of(request).manager.sent_keys.send_once(
            session_id, key, lambda: service.send(session_id, body, upload=upload, upload_type=upload_type))
        if replayed:
            await discard(upload)  # the earlier send's file was kept; this copy is not needed
        return JSONResponse(message.model_dump(mode="json"), status_code=sent_status(message),
                            headers={"Idempotent-Replayed": "true"} if replayed else None)

    @router.get(
        "/sessions/{session_id}/messages/{message_id}/media", tags=["messages"],
        responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"},
                   206: {"description": "the range asked for"},
                   416: {"description": "the range starts past the end"}, **error_responses(404)},
        response_class=Response,
    )
    async def message_media(
        session_id: SessionId, message_id: Annotated[str, Path(min_length=1, max_length=128)],
        request: Request, service: Service,
    ) -> Response:
        """A media message's file (``message_id``: watui's ``id`` or WhatsApp's ``message_id``),
        with ``Content-Type``, ``Content-Length`` and ``Range`` support. ``404
        MEDIA_NOT_FOUND`` when the message has no stored file (not a media message,
        ``download_media`` off, or pruned by media retention)."""
        content = await service.message_media(session_id, message_id)
        return media_response(content, request.headers.get("range"))

    @router.get("/sessions/{session_id}/messages", response_model=MessagePage, tags=["messages"],
                responses=error_responses(404))
    async def list_messages(
        session_id: SessionId,
        service: Service,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> JSONResponse:
        """Messages sent and received, newest first."""
        page = await service.list_messages(session_id, limit=limit, offset=offset)
        return JSONResponse(page.model_dump(mode="json"))

    if simulated:

        @router.post("/sessions/{session_id}/simulate", response_model=SessionView, tags=["simulated"],
                     responses=error_responses(404, 409), dependencies=[strict_json(SimulateRequest)])
        async def simulate(session_id: SessionId, body: SimulateRequest, service: Service) -> JSONResponse:
            """Play the phone (simulated engine only): scan the code, drop the connection, log
            out, fail, or receive a message."""
            return session_json(await service.simulate(session_id, body))

    return router


def _url(value: object | None) -> str | None:
    return None if value is None else str(value)


def _late_pair_code(asked: asyncio.Future[PairCode]) -> None:
    """Collect the outcome of a pairing-code request nobody waits for any more."""
    if not asked.cancelled() and (exc := asked.exception()) is not None:
        log.debug("a pairing-code request ended with %s: %s", type(exc).__name__, exc)


def sent_status(message: Message) -> int:
    """A send's answer: ``201`` sent (or failed and recorded), ``202`` queued by pacing."""
    return 202 if message.status is MessageStatus.PENDING else 201
