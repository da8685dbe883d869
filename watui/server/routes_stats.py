"""``GET /v1/sessions/{session_id}/stats`` and ``GET /v1/stats``: message statistics.

A router of its own, like :mod:`watui.server.routes_webhooks`; ``create_app`` includes it. Both
ask the caller's scoped service, which asks the store (two indexed GROUP BY queries, see
:mod:`watui.stores.stats`): another owner's session answers ``404 SESSION_NOT_FOUND``, and
``/v1/stats`` counts the caller's own sessions (every session for an admin key).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from watui.models import MAX_STATS_DAYS, MessageStats
from watui.server.deps import Service, SessionId
from watui.server.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["statistics"])

Days = Annotated[int, Query(ge=1, le=MAX_STATS_DAYS, description="UTC days `by_day` covers, today included")]


@router.get("/sessions/{session_id}/stats", response_model=MessageStats, responses=error_responses(404))
async def session_stats(session_id: SessionId, service: Service, days: Days = 30) -> JSONResponse:
    """The session's message statistics: `total`, `sent` (outgoing, not failed), `received` and
    `failed` over every stored message; `by_type` (every message is `text` today); `by_day`, one
    entry per UTC day of the last `days` (zeros included) with `sent` and `received`; and
    `last_activity`, the newest message's time (null without messages)."""
    stats = await service.message_stats(session_id, days=days)
    return JSONResponse(stats.model_dump(mode="json"))


@router.get("/stats", response_model=MessageStats, responses=error_responses())
async def all_stats(service: Service, days: Days = 30) -> JSONResponse:
    """Message statistics over every session the key sees (its owner's; all of them for an
    admin key), in the shape of `GET /v1/sessions/{session_id}/stats`."""
    stats = await service.all_message_stats(days=days)
    return JSONResponse(stats.model_dump(mode="json"))


stats_router = router
