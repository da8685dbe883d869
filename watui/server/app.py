"""The FastAPI app: thin routes over :class:`watui.service.SessionService`.

Each route authenticates the caller, asks the manager for a service scoped to that caller's
owner and makes one service call. Nothing about a session's lifecycle is decided here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from watui import __version__
from watui.errors import ValidationFailed
from watui.machine import EventType, Status
from watui.models import (
    Caller,
    Event,
    Message,
    MessagePage,
    PairCode,
    QrCode,
    SendMessage,
    Session,
    SessionCreate,
    SessionUpdate,
    SimulateRequest,
)
from watui.qr import png_bytes
from watui.server.auth import require_caller, require_stream_caller
from watui.server.errors import BodyLimit, install_error_handlers
from watui.server.openapi import install as install_openapi
from watui.server.routes_bulk import bulk_router
from watui.server.routes_engine import engine_router
from watui.server.routes_events import events_router
from watui.server.routes_webhooks import webhooks_router
from watui.server.schemas import (
    ErrorResponse,
    Health,
    PairCodeRequest,
    SessionCreated,
    SessionList,
    SessionView,
    error_responses,
)
from watui.server.streams import (
    CLOSING_EVENTS,
    STREAM_STATE_EVENTS,
    EventStream,
    FrameCache,
    closed_as_of,
    parse_last_event_id,
    pump,
    snapshot_frames,
)
from watui.service import SessionService, SortKey, Subscription

if TYPE_CHECKING:
    from watui.config import Settings
    from watui.manager import SessionManager

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

SessionId = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, max_length=64, description="the session's id")
]

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: frames with `id:`, `event:` and a JSON `data:`; "
        "`: ping` comments while idle.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}


class ServerState:
    """What the routes share: the manager, the frame cache and the shutdown signal."""

    def __init__(self, manager: SessionManager, settings: Settings, send_timeout: float) -> None:
        self.manager = manager
        self.settings = settings
        self.send_timeout = send_timeout
        self.frames = FrameCache()
        self.stopping = asyncio.Event()
        self.subscriptions: set[Subscription] = set()
        self.simulated = manager.service(Caller.local_admin()).simulated

    async def stop_streams(self) -> None:
        """End every open SSE stream (the server is shutting down)."""
        self.stopping.set()
        for subscription in list(self.subscriptions):
            await subscription.aclose()

    def resume_point(self, header: str | None, query: str | None) -> int | None:
        """The validated ``Last-Event-ID``. One past the end of the log cannot have come from
        this server (every id sent is committed first): resuming there would wait for events
        that may never match, so it is refused instead."""
        resume = parse_last_event_id(header, query)
        head = self.manager.store.last_committed_id
        if resume is not None and resume > head:
            raise ValidationFailed(
                f"Last-Event-ID {resume} is ahead of the event log (last id {head})",
                details={"last_event_id": resume, "last_id": head},
            )
        return resume

    def pump(
        self,
        subscription: Subscription,
        first: list[bytes] | None = None,
        close_on: frozenset[EventType] = frozenset(),
    ) -> EventStream:
        """An SSE response streaming ``first`` then ``subscription``'s events."""
        content = pump(subscription, self.frames, first=first or (), close_on=close_on,
                       registry=self.subscriptions)
        return self.stream(content)

    def stream(self, content: AsyncIterator[bytes]) -> EventStream:
        return EventStream(
            content,
            stopping=self.stopping,
            ping=self.settings.sse_ping_interval,
            send_timeout=self.send_timeout,
        )


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.watui
    return state


def service_for(caller: Caller, request: Request) -> SessionService:
    return state_of(request).manager.service(caller)


async def get_service(
    request: Request, caller: Annotated[Caller, Depends(require_caller)]
) -> SessionService:
    return service_for(caller, request)


async def get_stream_service(
    request: Request, caller: Annotated[Caller, Depends(require_stream_caller)]
) -> SessionService:
    return service_for(caller, request)


Service = Annotated[SessionService, Depends(get_service)]
StreamService = Annotated[SessionService, Depends(get_stream_service)]


def _integral_floats_as_ints(value: Any) -> Any:
    """``5.0`` is an integer in JSON Schema's eyes; strict pydantic would refuse it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def strict_json(model: type[BaseModel]) -> Any:
    """A dependency that checks the body against ``model`` in strict mode.

    FastAPI's own validation is lax: it takes ``"start": 0`` for ``false`` and ``"5"`` for
    ``5``, which the documented schema forbids. The route keeps its typed body parameter for
    the OpenAPI document and for the value; this only refuses what is not what it documents.
    """

    async def check(request: Request) -> None:
        raw = await request.body()
        try:
            data = _integral_floats_as_ints(json.loads(raw)) if raw else None
            model.model_validate_json(json.dumps(data), strict=True)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
            raise RequestValidationError(errors) from None
        except (ValueError, RecursionError):
            raise RequestValidationError(
                [{"loc": ("body",), "msg": "cannot be parsed as JSON", "type": "json_invalid"}]
            ) from None

    return Depends(check)


def session_json(session: Session, status_code: int = 200) -> JSONResponse:
    """A session as JSON, without the webhook secret. Returned directly: the response model
    documents it, and skipping a second validation keeps listings fast."""
    return JSONResponse(session.public(), status_code=status_code)


def _router(state: ServerState) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/health", response_model=Health, tags=["server"],
                responses=error_responses(auth=False))
    async def health() -> Health:
        """Liveness: answers without a key, also while start-up restore is under way
        (`restoring`)."""
        return Health(version=__version__, engine=state.settings.engine,
                      restoring=state.manager.restore_progress)

    @router.post(
        "/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"],
        responses=error_responses(409), dependencies=[strict_json(SessionCreate)],
    )
    async def create_session(spec: SessionCreate, request: Request, service: Service) -> JSONResponse:
        """Create a session (and start it unless `start` is false). Open `stream_url` to follow
        it: the QR codes to scan arrive there."""
        session = await service.create_session(spec)
        stream_url = str(request.url_for("session_stream", session_id=session.id))
        generated = spec.settings.webhook_secret is None and session.settings.webhook_secret is not None
        return JSONResponse(
            {"session_id": session.id, "stream_url": stream_url,
             "session": session.public(reveal_secret=generated)},
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
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
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
    async def update_session(session_id: SessionId, patch: SessionUpdate, service: Service) -> JSONResponse:
        """Rename, describe, or change settings (only the fields given change; `null` for
        `auto_reconnect` or `max_reconnect_attempts` leaves them as they are)."""
        before = await service.get_session(session_id)
        after = await service.update_session(session_id, patch)
        # A secret the server generated just now (a webhook URL was set without one) is
        # shown in this response, once.
        generated = after.settings.webhook_secret not in (None, before.settings.webhook_secret)
        return JSONResponse(after.public(reveal_secret=generated))

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
        qr = await service.get_qr(session_id)
        if "image/png" in request.headers.get("accept", ""):
            return Response(
                png_bytes(qr.qr_text), media_type="image/png",
                headers={"Cache-Control": "no-store", "X-QR-Generation": str(qr.generation)},
            )
        return JSONResponse(qr.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    @router.post("/sessions/{session_id}/pair-code", response_model=PairCode, tags=["linking"],
                 responses=error_responses(404, 409, 502), dependencies=[strict_json(PairCodeRequest)])
    async def pair_code(session_id: SessionId, body: PairCodeRequest, service: Service) -> JSONResponse:
        """Link by phone number: returns the 8-character code to type on the phone."""
        code = await service.request_pair_code(session_id, body.phone_number)
        return JSONResponse(code.model_dump(mode="json"))

    @router.post("/sessions/{session_id}/messages", status_code=201, response_model=Message,
                 tags=["messages"], responses=error_responses(404, 409, 502),
                 dependencies=[strict_json(SendMessage)])
    async def send_message(session_id: SessionId, body: SendMessage, service: Service) -> JSONResponse:
        """Send a text message; the session must be connected."""
        message = await service.send_message(session_id, body.to, body.text)
        return JSONResponse(message.model_dump(mode="json"), status_code=201)

    @router.get("/sessions/{session_id}/messages", response_model=MessagePage, tags=["messages"],
                responses=error_responses(404))
    async def list_messages(
        session_id: SessionId,
        service: Service,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> JSONResponse:
        """Messages sent and received, newest first."""
        page = await service.list_messages(session_id, limit=limit, offset=offset)
        return JSONResponse(page.model_dump(mode="json"))

    if state.simulated:

        @router.post("/sessions/{session_id}/simulate", response_model=SessionView, tags=["simulated"],
                     responses=error_responses(404, 409), dependencies=[strict_json(SimulateRequest)])
        async def simulate(session_id: SessionId, body: SimulateRequest, service: Service) -> JSONResponse:
            """Play the phone (simulated engine only): scan the code, drop the connection, log
            out, fail, or receive a message."""
            return session_json(await service.simulate(session_id, body))

    @router.get(
        "/sessions/{session_id}/stream", name="session_stream", tags=["events"],
        response_class=Response,
        responses={**SSE_RESPONSES, 204: {"description": "the stream already ended at or before "
                                                          "`Last-Event-ID`; stop reconnecting"},
                   **error_responses(404)},
    )
    async def session_stream(
        session_id: SessionId,
        service: StreamService,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
        last_event_id: Annotated[str | None, Query(max_length=40)] = None,
    ) -> Response:
        """SSE for one session: its current state at once (the live QR if one is up), then
        `status`, `qr`, `pair_code`, … as they happen. Closes after `connected` or `error`."""
        resume = state.resume_point(last_event_id_header, last_event_id)
        await service.get_session(session_id)  # 404 before anything else
        if resume is not None:
            store = state.manager.store

            def read(after_id: int, limit: int) -> Awaitable[list[Event]]:
                return store.read_events(
                    after_id=after_id, session_id=session_id, types=STREAM_STATE_EVENTS, limit=limit
                )

            if await closed_as_of(read, resume):
                return Response(status_code=204)
            subscription = service.subscribe(session_id=session_id, after_id=resume)
            return state.pump(subscription, close_on=CLOSING_EVENTS)
        subscription = service.subscribe(session_id=session_id)
        try:
            # Subscribe first, then read the state: a change in between arrives live as well.
            session = await service.get_session(session_id)
            first, closed = await snapshot_frames(service, session, subscription.last_id)
        except BaseException:
            await subscription.aclose()
            raise
        if closed:
            await subscription.aclose()
            return state.stream(_finite(first))
        return state.pump(subscription, first, close_on=CLOSING_EVENTS)

    @router.get("/events", tags=["events"], response_class=Response,
                responses={**SSE_RESPONSES, **error_responses()})
    async def events(
        service: StreamService,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
        last_event_id: Annotated[str | None, Query(max_length=40)] = None,
    ) -> Response:
        """SSE for every session the caller sees. With `Last-Event-ID` (or `?last_event_id=`) it
        replays what came after that id first: no gap, no duplicate, across restarts too."""
        resume = state.resume_point(last_event_id_header, last_event_id)
        subscription = service.subscribe(after_id=resume)
        response = state.pump(subscription)
        # Where the log stood: a client that sees no event before it disconnects resumes here.
        response.headers["X-Last-Event-Id"] = str(subscription.last_id)
        return response

    return router


async def _finite(frames: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in frames:
        yield chunk


def create_app(
    manager: SessionManager,
    settings: Settings | None = None,
    *,
    owns_manager: bool = False,
    send_timeout: float = 30.0,
) -> FastAPI:
    """The HTTP + SSE app over an open manager.

    With ``owns_manager`` the app closes the manager when it shuts down (``watui serve``);
    otherwise the caller does. ``send_timeout`` drops an SSE client that stops reading.
    """
    settings = settings or manager.settings
    state = ServerState(manager, settings, send_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.stop_streams()
            if owns_manager:
                await manager.aclose()

    app = FastAPI(
        title="watui",
        version=__version__,
        summary="Many WhatsApp linked-device sessions over HTTP and Server-Sent Events.",
        description=(
            "Every error answers `{\"error\": {\"code\", \"message\", \"details\"}}`; each route "
            "lists its codes. Authenticate with `Authorization: Bearer <api key>` (SSE routes "
            "also take `?access_token=`)."
        ),
        lifespan=lifespan,
        responses={413: {"model": ErrorResponse, "description": "`PAYLOAD_TOO_LARGE`"}},
    )
    app.state.watui = state
    app.state.manager = manager
    install_error_handlers(app)
    install_openapi(app)
    routers = [_router(state), webhooks_router, engine_router, events_router, bulk_router]
    app.state.route_methods = [
        (route.path_regex, frozenset(route.methods or ()))
        for router in routers for route in router.routes if isinstance(route, APIRoute)
    ]
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Added last = outermost: refusals (401, 413, …) carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Accept"],
        )
    return app
