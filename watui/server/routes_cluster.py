"""``GET /v1/cluster``: the nodes of the cluster, from the :class:`~watui.cluster.types.Locator`
(admin only).

A router of its own, like :mod:`watui.server.routes_engine`. A non-admin key gets ``403
FORBIDDEN``; a server that runs alone (no ``WATUI_DATABASE_URL``, so no locator) answers
``404 NOT_FOUND``, which tells a client it is not talking to a cluster rather than inventing a
one-node view with a lease TTL that means nothing.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from watui.errors import Forbidden, NotFound
from watui.server.deps import CurrentCaller, state_of
from watui.server.schemas import error_responses


class NodeView(BaseModel):
    node_id: str
    url: str = Field(..., description="where the other nodes reach this node's API")
    started_at: datetime
    heartbeat_at: datetime = Field(..., description="the node's last heartbeat")
    sessions: int = Field(..., description="sessions the node runs, as of its last heartbeat")
    capacity: int = Field(..., description="sessions the node runs at most")
    instance: str | None = Field(None, description="the process running the node id now (new at each start): "
                                 "a change means the node restarted")


class ClusterView(BaseModel):
    nodes: list[NodeView] = Field(..., description="nodes that heartbeated lately, oldest first")
    lease_ttl: float = Field(..., description="seconds a node's hold on a session lasts unless renewed")


router = APIRouter(prefix="/v1", tags=["cluster"])


@router.get("/cluster", response_model=ClusterView, responses=error_responses(403, 404))
async def cluster(request: Request, caller: CurrentCaller) -> JSONResponse:
    """The nodes of the cluster and the sessions each runs. `404 NOT_FOUND` when this server
    runs alone (not in cluster mode)."""
    if not caller.admin:
        raise Forbidden("The cluster view needs an admin key")
    locator = state_of(request).locator
    if locator is None:
        raise NotFound("This server is not part of a cluster (it runs alone: no WATUI_DATABASE_URL)")
    nodes = [
        NodeView(node_id=n.node_id, url=n.url, started_at=n.started_at, heartbeat_at=n.heartbeat_at,
                 sessions=n.sessions, capacity=n.capacity, instance=n.instance)
        for n in await locator.nodes()
    ]
    return JSONResponse(ClusterView(nodes=nodes, lease_ttl=locator.lease_ttl).model_dump(mode="json"))


cluster_router = router
