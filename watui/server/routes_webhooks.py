"""``GET /v1/sessions/{session_id}/webhooks/deliveries``: a session's webhook attempts log.

A separate router so the webhook feature stays in its own files; ``create_app`` includes it
with ``app.include_router(webhooks_router)``. It authenticates like every other route
(:func:`watui.server.auth.require_caller`) and asks the caller's scoped service, so another
owner's session answers ``404 SESSION_NOT_FOUND`` here too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from watui.models import Caller
from watui.server.auth import require_caller
from watui.server.schemas import error_responses
from watui.service import SessionService
from watui.webhooks import WebhookDeliveryPage

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # the same as the other session routes


async def caller_service(
    request: Request, caller: Annotated[Caller, Depends(require_caller)]
) -> SessionService:
    """The caller's service; imported from no other route module so there is no import cycle
    with ``watui.server.app``."""
    service: SessionService = request.app.state.manager.service(caller)
    return service


router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.get(
    "/sessions/{session_id}/webhooks/deliveries",
    response_model=WebhookDeliveryPage,
    responses=error_responses(404),
)
async def list_webhook_deliveries(
    session_id: Annotated[str, Path(pattern=SESSION_ID_PATTERN, max_length=64, description="the session's id")],
    service: Annotated[SessionService, Depends(caller_service)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> JSONResponse:
    """Webhook deliveries of this session, newest first: status (`pending`, `delivered`,
    `failed`, `dead`), the `webhook-id` every retry carries, the next retry time, and each
    attempt with its HTTP status, error and duration."""
    page = await service.list_webhook_deliveries(session_id, limit=limit, offset=offset)
    return JSONResponse(page.model_dump(mode="json"))


webhooks_router = router
