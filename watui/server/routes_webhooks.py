"""``GET /v1/sessions/{session_id}/webhooks/deliveries``: a session's webhook attempts log.

It authenticates like every other route and asks the caller's scoped service, so another
owner's session answers ``404 SESSION_NOT_FOUND`` here too. A non-admin caller sees each
error as a short reason, never the receiver's body (it may be an internal page).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from watui.server.deps import CurrentCaller, Service, SessionId
from watui.server.schemas import error_responses
from watui.service import MAX_PAGE
from watui.webhooks import WebhookDeliveryPage, redacted

router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.get(
    "/sessions/{session_id}/webhooks/deliveries",
    response_model=WebhookDeliveryPage,
    responses=error_responses(404),
)
async def list_webhook_deliveries(
    session_id: SessionId,
    service: Service,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> JSONResponse:
    """Webhook deliveries of this session, newest first: status (`pending`, `delivered`,
    `failed`, `dead`), the `webhook-id` every retry carries, the next retry time, and each
    attempt with its HTTP status, error and duration. Errors are short reasons (`HTTP 503`,
    `timed out after 10 s`, …); only an admin key also sees the start of the receiver's answer."""
    page = await service.list_webhook_deliveries(session_id, limit=limit, offset=offset)
    if not caller.admin:
        page = redacted(page)
    return JSONResponse(page.model_dump(mode="json"))


webhooks_router = router
