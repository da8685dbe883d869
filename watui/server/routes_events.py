"""The event log as JSON: what a client needs besides the live stream.

``GET /v1/sessions/{id}/events`` gives a session's latest events (a detail pane's log) and
``GET /v1/events/log`` pages through the log by id. ``watui attach`` uses both to implement
``recent_events`` and ``list_events`` of :class:`watui.service.SessionService`; each event is
``{id, type, session_id, owner, timestamp, payload}``, the log row itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from watui.models import Event
from watui.server.deps import Service, SessionId
from watui.server.schemas import error_responses
from watui.service import MAX_EVENT_PAGE

router = APIRouter(prefix="/v1", tags=["events"])


class EventList(BaseModel):
    events: list[Event]


def _events_json(events: list[Event]) -> JSONResponse:
    return JSONResponse({"events": [e.model_dump(mode="json") for e in events]})


@router.get("/sessions/{session_id}/events", response_model=EventList, responses=error_responses(404))
async def session_events(
    session_id: SessionId,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENT_PAGE)] = 50,
) -> JSONResponse:
    """The session's latest `limit` events, oldest first."""
    return _events_json(await service.recent_events(session_id, limit=limit))


@router.get("/events/log", response_model=EventList, responses=error_responses(404))
async def event_log(
    service: Service,
    session_id: Annotated[str | None, Query(max_length=64, description="only this session's")] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENT_PAGE)] = 100,
) -> JSONResponse:
    """Past events after `after_id`, in id order (every session the caller sees, or one);
    page on with the last `id` as the next `after_id`."""
    return _events_json(await service.list_events(session_id=session_id, after_id=after_id, limit=limit))


events_router = router
