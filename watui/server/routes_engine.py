"""``GET /v1/engine/hosts``: the engine host processes and the sessions in each (admin only).

A router of its own, like :mod:`watui.server.routes_webhooks`; ``create_app`` includes it. A
non-admin key gets ``403 FORBIDDEN`` from the service (:meth:`SessionService.engine_hosts`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from watui.models import EngineHost
from watui.server.deps import Service
from watui.server.schemas import error_responses


class EngineHostList(BaseModel):
    hosts: list[EngineHost]


router = APIRouter(prefix="/v1", tags=["engine"])


@router.get("/engine/hosts", response_model=EngineHostList, responses=error_responses(403))
async def list_engine_hosts(service: Service) -> JSONResponse:
    """Engine host processes: id, pid, the session ids placed in each, when it started, the
    connect attempts it made, how many host processes ran in its slot before it (`restarts`:
    after a crash, recycling or an idle stop alike) and how many of those crashed (`crashes`:
    ended without being asked). Empty when engines run inline (`WATUI_ENGINE_ISOLATION=inline`)."""
    hosts = await service.engine_hosts()
    return JSONResponse({"hosts": [h.model_dump(mode="json") for h in hosts]})


engine_router = router
