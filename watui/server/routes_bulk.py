"""``POST /v1/bulk/sessions``: many sessions in one streamed response.

A console keeps every session on screen. Read page by page (100 at most), 10,000 sessions
are 100 round trips, each paying for authentication and a fresh listing; here they are one
request, streamed as NDJSON (one session per line) in chunks that give the event loop back in
between, so a large read never stalls the server's other clients. With ``ids`` it reads just
those sessions (the ones an event said changed); ids the caller cannot see are left out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from watui.errors import SessionNotFound
from watui.machine import Status
from watui.models import Session, Strict
from watui.server.deps import Service, strict_json
from watui.server.schemas import error_responses
from watui.service import MAX_BULK_IDS, SortKey

CHUNK = 250
"""Sessions encoded between two yields to the event loop."""

router = APIRouter(prefix="/v1", tags=["sessions"])


class BulkRead(Strict):
    ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, max_length=MAX_BULK_IDS,
        description="just these sessions (in this order); all when absent. An id that names no "
        "session the caller sees is left out",
    )
    status: Status | None = None
    q: str | None = Field(None, max_length=100, description="matches name, phone, status")
    sort: SortKey = "created_at"
    descending: bool = False


def _line(session: Session) -> str:
    if session.has_secrets:  # masked as every read masks them
        return json.dumps(session.public(), separators=(",", ":"), ensure_ascii=False)
    return session.model_dump_json()


async def _lines(sessions: list[Session]) -> AsyncIterator[bytes]:
    for start in range(0, len(sessions), CHUNK):
        yield "".join(_line(s) + "\n" for s in sessions[start : start + CHUNK]).encode()
        await asyncio.sleep(0)


@router.post(
    "/bulk/sessions",
    response_class=StreamingResponse,
    dependencies=[strict_json(BulkRead)],
    responses={200: {"description": "`application/x-ndjson`: one session (as `GET /v1/sessions/{id}` "
                                    "gives it) per line", "content": {"application/x-ndjson": {}}},
               **error_responses()},
)
async def bulk_sessions(body: BulkRead, service: Service) -> StreamingResponse:
    """Every session the caller sees (filtered and sorted like `GET /v1/sessions`, without
    pages), or just `ids`, as NDJSON."""
    if body.ids is not None:
        sessions = []
        for session_id in body.ids:
            try:
                sessions.append(await service.get_session(session_id))
            except SessionNotFound:
                continue
    else:
        page = await service.list_sessions(status=body.status, query=body.q or None, limit=None,
                                           sort=body.sort, descending=body.descending)
        sessions = page.sessions
    return StreamingResponse(_lines(sessions), media_type="application/x-ndjson",
                             headers={"X-Total-Count": str(len(sessions))})


bulk_router = router
