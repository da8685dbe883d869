"""The SSE routes: ``/v1/sessions/{id}/stream`` (one session, until it links) and
``/v1/events`` (every session the caller sees, resumable). Each open stream holds a lease
(:mod:`watui.server.limits`): bounded per key and in total, ended when its key is revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from watui.errors import EventsExpired
from watui.models import Event
from watui.server.deps import SessionId, StreamService, state_of
from watui.server.schemas import error_responses
from watui.server.streams import (
    CLOSING_EVENTS,
    STREAM_STATE_EVENTS,
    closed_as_of,
    latest_events,
    snapshot_frames,
)

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: `retry:` first, then frames with `id:`, `event:` and a "
        "JSON `data:`; `: ping` comments while idle.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}

LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)]
LastEventIdQuery = Annotated[str | None, Query(max_length=40)]


def streams_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["events"])

    @router.get(
        "/sessions/{session_id}/stream", name="session_stream", response_class=Response,
        responses={**SSE_RESPONSES, 204: {"description": "the stream already ended at or before "
                                                          "`Last-Event-ID`; stop reconnecting"},
                   **error_responses(404, 429)},
    )
    async def session_stream(
        session_id: SessionId,
        service: StreamService,
        request: Request,
        last_event_id_header: LastEventIdHeader = None,
        last_event_id: LastEventIdQuery = None,
    ) -> Response:
        """SSE for one session: its current state at once (the live QR if one is up), then
        `status`, `qr`, `pair_code`, … as they happen. Closes after `connected` or `error`."""
        state = state_of(request)
        resume = await state.resume_point(last_event_id_header, last_event_id)
        await service.get_session(session_id)  # 404 before anything else
        store = state.manager.store
        if resume is not None:

            def read(after_id: int, limit: int) -> Awaitable[list[Event]]:
                return store.read_events(
                    after_id=after_id, session_id=session_id, types=STREAM_STATE_EVENTS, limit=limit
                )

            if await closed_as_of(read, resume):
                return Response(status_code=204)
            lease = state.lease(request.state.api_key_id, service_caller(request))
            subscription = service.subscribe(session_id=session_id, after_id=resume)
            return state.pump(subscription, lease, close_on=CLOSING_EVENTS)
        lease = state.lease(request.state.api_key_id, service_caller(request))
        subscription = service.subscribe(session_id=session_id)
        try:
            # Subscribe first, then read the state: a change in between arrives live as well.
            session = await service.get_session(session_id)
            latest = await latest_events(store, session_id, subscription.last_id)
            first, closed = await snapshot_frames(session, latest, state.frames, subscription.last_id)
        except BaseException:
            lease.release()
            await subscription.aclose()
            raise
        if closed:
            await subscription.aclose()
            return state.stream(_finite(first), lease)
        return state.pump(subscription, lease, first, close_on=CLOSING_EVENTS)

    @router.get("/events", response_class=Response,
                responses={**SSE_RESPONSES, **error_responses(410, 429)})
    async def events(
        service: StreamService,
        request: Request,
        last_event_id_header: LastEventIdHeader = None,
        last_event_id: LastEventIdQuery = None,
    ) -> Response:
        """SSE for every session the caller sees. With `Last-Event-ID` (or `?last_event_id=`) it
        replays what came after that id first: no gap, no duplicate, across restarts too. A
        resume from before the oldest event still kept (see retention) is `410 EVENTS_EXPIRED`
        with `details.oldest_id`."""
        state = state_of(request)
        resume = await state.resume_point(last_event_id_header, last_event_id)
        if resume is not None:
            oldest = await state.manager.store.oldest_event_id()
            if resume < oldest - 1:
                raise EventsExpired(resume, oldest)
        lease = state.lease(request.state.api_key_id, service_caller(request))
        subscription = service.subscribe(after_id=resume)
        response = state.pump(subscription, lease)
        # Where the log stood: a client that sees no event before it disconnects resumes here.
        response.headers["X-Last-Event-Id"] = str(subscription.last_id)
        return response

    return router


def service_caller(request: Request) -> Any:
    """The caller the auth dependency found for this request."""
    return request.state.caller


async def _finite(frames: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in frames:
        yield chunk
